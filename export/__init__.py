"""Export of the CVAE decoder to an ONNX model repository (models/<name>/<version>/)."""
