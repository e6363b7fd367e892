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


def test_a_confidence_cap_leaves_samples_that_already_read_as_their_label_alone() -> None:
    torch.manual_seed(0)
    guidance = LabelGuidance(10, (28, 28), lr=3e-3)
    images, labels = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    for _ in range(60):  # the classifier learns to read these 8 images as their labels
        guidance.fit_step(images, labels)
    samples = images[:, 0].clone().requires_grad_(True)
    wanted = labels.clone()
    wanted[0] = (labels[0] + 1) % 10  # one sample asked to be a digit it does not read as
    with torch.no_grad():
        probability = guidance.classifier.eval()(images).softmax(1)
    assert probability[torch.arange(1, 8), labels[1:]].min() > 0.9
    loss = guidance.sample_loss(samples, wanted, confidence=0.9)
    loss.backward()
    assert samples.grad is not None
    assert samples.grad[1:].abs().sum() == 0  # read as their label: no pull at all
    assert samples.grad[0].abs().sum() > 0  # the one that is not gets the full push
    plain = guidance.sample_loss(samples, wanted)
    per_sample = -torch.log(probability[torch.arange(8), wanted])
    assert torch.isclose(plain, per_sample.mean(), atol=1e-4)
    expected = torch.clamp(per_sample + torch.log(torch.tensor(0.9)), min=0).mean()
    assert torch.isclose(loss, expected, atol=1e-4)
