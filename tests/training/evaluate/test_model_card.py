"""The model card's quality bars: each limit met or missed at its boundary."""

from __future__ import annotations

from training.evaluate.model_card import bar_results


def _metrics(cas: float, accuracy: float, worst: float, frechet: float, elbo: float) -> dict:
    return {
        "cas_gap_points": cas,
        "label_accuracy": accuracy,
        "label_accuracy_worst": worst,
        "second_classifier": {"label_accuracy": accuracy, "label_accuracy_worst": worst},
        "frechet_ratio": frechet,
        "test_negative_elbo": elbo,
    }


def test_bars_at_their_limits_are_met() -> None:
    results = bar_results(_metrics(0.7, 0.99, 0.975, 6.62, 88.0))
    assert len(results) == 7 and all(result["met"] for result in results)


def test_bars_just_past_their_limits_are_missed() -> None:
    results = bar_results(_metrics(0.71, 0.9899, 0.9749, 6.63, 88.01))
    assert len(results) == 7 and not any(result["met"] for result in results)


def test_only_measured_metrics_get_a_bar() -> None:
    results = bar_results(
        {"label_accuracy": 0.99, "label_accuracy_worst": 0.97, "second_classifier": {}}
    )
    assert [result["metric"] for result in results] == ["label_accuracy", "label_accuracy_worst"]
