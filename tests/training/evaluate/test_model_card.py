"""The model card's quality bars: each limit met or missed at its boundary."""

from __future__ import annotations

from training.evaluate.model_card import bar_results


def test_bars_at_their_limits_are_met() -> None:
    metrics = {
        "label_accuracy": 0.985,
        "label_accuracy_worst": 0.96,
        "frechet_ratio": 8.0,
        "test_negative_elbo": 90.0,
    }
    assert all(result["met"] for result in bar_results(metrics))


def test_bars_just_past_their_limits_are_missed() -> None:
    metrics = {
        "label_accuracy": 0.9849,
        "label_accuracy_worst": 0.9599,
        "frechet_ratio": 8.01,
        "test_negative_elbo": 90.01,
    }
    assert not any(result["met"] for result in bar_results(metrics))


def test_only_measured_metrics_get_a_bar() -> None:
    results = bar_results(
        {"label_accuracy": 0.99, "label_accuracy_worst": 0.97, "frechet_ratio": 3}
    )
    assert [result["metric"] for result in results] == [
        "label_accuracy",
        "label_accuracy_worst",
        "frechet_ratio",
    ]
