"""The Open Inference Protocol (KServe v2): the model's signature, and its gRPC and HTTP faces."""
