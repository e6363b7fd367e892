"""training/label_guidance.py: the classifier learns from real images; its loss moves samples."""

from __future__ import annotations

import torch

from training.label_guidance import LabelGuidance


def test_fit_step_lowers_the_classifier_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    guidance = LabelGuidance(10, (28, 28), lr=3e-3)
    images, labels = torch.rand(32, 1, 28, 28), torch.arange(32) % 10
    first = guidance.fit_step(images, labels)
    for _ in range(30):
        last = guidance.fit_step(images, labels)
    assert last < first


def test_sample_loss_sends_gradients_to_the_samples_not_the_classifier() -> None:
    guidance = LabelGuidance(10, (28, 28), lr=1e-3)
    samples = torch.rand(4, 28, 28, requires_grad=True)
    loss = guidance.sample_loss(samples, torch.tensor([1, 2, 3, 4]))
    loss.backward()
    assert samples.grad is not None and samples.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in guidance.classifier.parameters())
    assert all(parameter.requires_grad for parameter in guidance.classifier.parameters())
