"""The gRPC generation service on onnxruntime. Never imports torch, training or export."""
