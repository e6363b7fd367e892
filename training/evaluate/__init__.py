"""The evaluator: an independent MNIST classifier and the scores of a trained CVAE.

Modules (nothing is imported here, so `cvae evaluate --help` stays free of torch):
- `classifier`, `classifier_cache`: the judge's CNN, trained once and cached by recipe + data.
- `sample_scores`: label accuracy and Fréchet distance of any `decode(z, labels) -> images`.
- `judge`: `build_judge(splits)` bundles classifier and real-image features; `torch_decode`.
- `onnx_model`: a published version folder as a decode callable (onnxruntime).
- `likelihood`: test −ELBO and the importance-weighted bound of a checkpoint.
- `sample_grid`, `model_card`, `evaluator`: the PNG, the card and the `cvae evaluate` run.
"""
