"""The model card: the evaluator's metrics, the quality bars met or missed, the sample grid."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class QualityBar:
    metric: str
    description: str
    limit: float
    higher_is_better: bool

    def met(self, value: float) -> bool:
        return value >= self.limit if self.higher_is_better else value <= self.limit


# The quality bars a shipped model must meet, on the project's own evaluator.
QUALITY_BARS = (
    QualityBar("label_accuracy", "prior samples classified as the requested label", 0.985, True),
    QualityBar("label_accuracy_worst", "worst label's accuracy", 0.96, True),
    QualityBar("frechet_ratio", "Fréchet distance / real-vs-real floor", 8.0, False),
    QualityBar("test_negative_elbo", "test-set negative ELBO, nats/image", 90.0, False),
)


def bar_results(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Each bar whose metric was measured: value, limit and whether it is met."""
    return [
        {
            "metric": bar.metric,
            "description": bar.description,
            "value": metrics[bar.metric],
            "limit": bar.limit,
            "comparison": ">=" if bar.higher_is_better else "<=",
            "met": bar.met(float(metrics[bar.metric])),
        }
        for bar in QUALITY_BARS
        if bar.metric in metrics
    ]


def card_json(metrics: dict[str, Any], grid_file: str) -> dict[str, Any]:
    return {"metrics": metrics, "quality_bars": bar_results(metrics), "sample_grid": grid_file}


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def card_markdown(metrics: dict[str, Any], grid_file: str) -> str:
    """Markdown of the card; every number comes from `metrics`."""
    model = metrics["model"]
    lines = [
        f"# Model card: {_title(model)}",
        "",
        f"Written by `cvae evaluate` at {metrics['created_at']} from `{model['path']}` "
        f"(sha256 `{model['sha256'][:16]}…`). Regenerate with the same command; it is seeded "
        f"(seed {metrics['seed']}).",
        "",
        "A conditional VAE decoder: z ~ N(0, I) of size "
        f"{model['latent_dim']} plus a label in {{{', '.join(model['class_names'])}}} "
        "gives a 28×28 image.",
        "",
        "## Quality bars",
        "",
        _row(["metric", "value", "bar", "met"]),
        _row(["---", "---:", "---", "---"]),
    ]
    for result in bar_results(metrics):
        lines.append(
            _row(
                [
                    result["description"],
                    f"{result['value']:.4g}",
                    f"{result['comparison']} {result['limit']:g}",
                    "yes" if result["met"] else "**no**",
                ]
            )
        )
    lines += ["", "## Scores", "", _row(["score", "value"]), _row(["---", "---:"])]
    for label, value in _score_rows(metrics):
        lines.append(_row([label, value]))
    lines += ["", "## Label accuracy per label", ""]
    per_label = metrics["label_accuracy_per_label"]
    lines.append(_row(["label", *per_label.keys()]))
    lines.append(_row(["---"] + ["---:"] * len(per_label)))
    lines.append(_row(["accuracy", *(f"{value:.3f}" for value in per_label.values())]))
    lines += [
        "",
        "## Samples",
        "",
        f"One row per label, z ~ N(0, I) at temperature {metrics['temperature']:g}:",
        "",
        f"![prior samples, one row per label]({grid_file})",
        "",
        "## How it was measured",
        "",
        *_method_lines(metrics),
    ]
    if "training_config" in metrics:
        lines += [
            "",
            "## Training configuration",
            "",
            "```json",
            json.dumps(metrics["training_config"], indent=2),
            "```",
        ]
    return "\n".join(lines) + "\n"


def _title(model: dict[str, Any]) -> str:
    if model["kind"] == "onnx":
        return f"{model.get('name')} version {model.get('version')} (ONNX, onnxruntime)"
    return f"CVAE checkpoint {model['path'].rsplit('/', 1)[-1]}"


def _score_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("label accuracy (all labels)", f"{metrics['label_accuracy']:.4f}"),
        ("label accuracy (worst label)", f"{metrics['label_accuracy_worst']:.4f}"),
        ("Fréchet distance, samples vs test", f"{metrics['frechet_distance']:.4f}"),
        ("Fréchet floor, valid vs test", f"{metrics['frechet_floor']:.4f}"),
        ("Fréchet ratio", f"{metrics['frechet_ratio']:.2f}"),
    ]
    if "test_negative_elbo" in metrics:
        rows += [
            (
                f"test −ELBO, nats/image ({metrics['test_images']} images)",
                _nats(metrics, "test_negative_elbo"),
            ),
            ("test −ELBO: reconstruction part (BCE)", _nats(metrics, "test_reconstruction")),
            ("test −ELBO: KL part", _nats(metrics, "test_kl")),
            (
                f"importance-weighted −log p(x|y) bound, k={metrics['iw_samples']} "
                f"(first {metrics['iw_images']} test images)",
                _nats(metrics, "iw_negative_log_likelihood"),
            ),
            (
                f"−ELBO on the same {metrics['iw_images']} images",
                _nats(metrics, "iw_subset_negative_elbo"),
            ),
        ]
    return rows


def _nats(metrics: dict[str, Any], key: str) -> str:
    return f"{metrics[key]:.2f}"


def _train_time(classifier: dict[str, Any]) -> str:
    seconds = classifier.get("train_seconds")
    if seconds is None:
        return "trained once and cached"
    return f"trained once in {seconds:.0f} s and cached"


def _method_lines(metrics: dict[str, Any]) -> list[str]:
    classifier = metrics["classifier"]
    lines = [
        f"- Samples: {metrics['samples_per_label']} per label, z ~ N(0, I) scaled by temperature "
        f"{metrics['temperature']:g}, seed {metrics['seed']}.",
        f"- Judge: the evaluator's own CNN classifier (trained on the 50,000 training images, "
        f"never on generated ones; {_train_time(classifier)}), test accuracy "
        f"{classifier['test_accuracy']:.4f}; its "
        f"{classifier['config']['feature_dim']}-d penultimate layer is the Fréchet feature space.",
        "- Fréchet distance: Gaussians fitted to the features of all samples and of the 10,000 "
        "test images; the floor is the same distance between the 10,000 validation images and "
        "the test images.",
    ]
    if "test_negative_elbo" in metrics:
        lines += [
            "- −ELBO: Bernoulli likelihood (BCE summed over 784 pixels) plus KL to N(0, I), one "
            f"z sample per image, all {metrics['test_images']} test images.",
            f"- Importance-weighted bound: log-mean-exp over k={metrics['iw_samples']} samples "
            "z ~ q(z|x,y) of log p(x|z,y) + log p(z) − log q(z|x,y), on the first "
            f"{metrics['iw_images']} test images only (the full test set takes too long on "
            "2 cores); the −ELBO of the same images is shown beside it.",
        ]
    lines.append(f"- Evaluation took {metrics['evaluation_seconds']:.0f} s.")
    return lines
