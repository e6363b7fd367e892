"""CVAE digit generator: the command line, the gRPC client and the generated protocol."""
