"""`make bench`: speed of the decoder, the gRPC service and NVIDIA Triton, measured in one run."""
