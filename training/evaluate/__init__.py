"""The evaluator: an independent MNIST classifier and the scores of a trained CVAE."""
