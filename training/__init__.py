"""Training and evaluation of the conditional VAE (PyTorch). Never imports grpc or the service."""
