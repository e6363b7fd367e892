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


# The quality bars a shipped model must meet, on the project's own evaluator; a dotted metric
# is nested.
QUALITY_BARS = (
    QualityBar(
        "cas_gap_points",
        "CAS gap: real-trained minus sample-trained CNN test accuracy, points",
        0.7,
        False,
    ),
    QualityBar("label_accuracy", "prior samples classified as the requested label", 0.99, True),
    QualityBar("label_accuracy_worst", "worst label's accuracy", 0.975, True),
    QualityBar(
        "second_classifier.label_accuracy",
        "the same, by the second classifier (another architecture)",
        0.99,
        True,
    ),
    QualityBar(
        "second_classifier.label_accuracy_worst", "worst label, second classifier", 0.975, True
    ),
    QualityBar("frechet_ratio", "Fréchet distance / floor, no worse than version 2", 6.62, False),
    QualityBar("test_negative_elbo", "test-set negative ELBO, nats/image", 88.0, False),
)


def _lookup(metrics: dict[str, Any], dotted: str) -> Any:
    value: Any = metrics
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def bar_results(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Each bar whose metric was measured: value, limit and whether it is met."""
    results = []
    for bar in QUALITY_BARS:
        value = _lookup(metrics, bar.metric)
        if value is None:
            continue
        results.append(
            {
                "metric": bar.metric,
                "description": bar.description,
                "value": value,
                "limit": bar.limit,
                "comparison": ">=" if bar.higher_is_better else "<=",
                "met": bar.met(float(value)),
            }
        )
    return results


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
        "gives a 28×28 image"
        + (
            " (z goes through the learned label-conditioned flow prior, then the decoder)."
            if metrics.get("prior") == "flow"
            else "."
        ),
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
    lines += ["", "## Per label", ""]
    per_label = metrics["label_accuracy_per_label"]
    lines.append(_row(["label", *per_label.keys()]))
    lines.append(_row(["---"] + ["---:"] * len(per_label)))
    lines.append(_row(["label accuracy", *(f"{value:.3f}" for value in per_label.values())]))
    second = metrics.get("second_classifier")
    if second:
        values = second["label_accuracy_per_label"].values()
        lines.append(
            _row(["label accuracy, second classifier", *(f"{value:.3f}" for value in values)])
        )
    if "cas_per_label" in metrics:
        values = metrics["cas_per_label"].values()
        lines.append(
            _row(["CAS: test accuracy of the sample-trained CNN", *(f"{v:.4f}" for v in values)])
        )
    lines += _usefulness_lines(metrics)
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


def _usefulness_lines(metrics: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if "cas_accuracy" in metrics:
        lines += [
            "",
            "## Classification Accuracy Score (CAS)",
            "",
            _row(["CNN trained on", "seed", "test accuracy"]),
            _row(["---", "---:", "---:"]),
        ]
        for row in metrics["cas_per_seed"]:
            n = metrics["cas_train_images"]
            lines.append(
                _row([f"{n} prior samples (T = 1)", str(row["seed"]), _pct(row["synthetic"])])
            )
            lines.append(_row([f"{n} real training digits", str(row["seed"]), _pct(row["real"])]))
        lines += [
            "",
            f"Mean over {len(metrics['cas_per_seed'])} seeds: samples "
            f"{_pct(metrics['cas_accuracy'])} (sd {100 * metrics['cas_accuracy_std']:.2f}), "
            f"real {_pct(metrics['cas_real_accuracy'])} "
            f"(sd {100 * metrics['cas_real_accuracy_std']:.2f}); "
            f"gap **{metrics['cas_gap_points']:.2f} points** (sd "
            f"{metrics['cas_gap_points_std']:.2f}). Weakest digit taught by the samples: "
            f"{metrics['cas_worst_label']}.",
        ]
    if "precision" in metrics:
        lines += [
            "",
            f"## Precision and recall (k-NN manifolds, k = {metrics['pr_neighbours']})",
            "",
            _row(["set, against the 10,000 test digits", "precision", "recall"]),
            _row(["---", "---:", "---:"]),
            _row(["prior samples", f"{metrics['precision']:.4f}", f"{metrics['recall']:.4f}"]),
        ]
        for name, found in metrics["pr_real_check"].items():
            label = name.replace("valid_blur_", "validation digits blurred, sigma ").replace(
                "valid", "validation digits"
            )
            lines.append(_row([label, f"{found['precision']:.4f}", f"{found['recall']:.4f}"]))
        lines += ["", f"Feature space: the {metrics['pr_feature_space']}."]
    return lines


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


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
    second = metrics.get("second_classifier")
    if second:
        rows += [
            ("second classifier: label accuracy", f"{second['label_accuracy']:.4f}"),
            ("second classifier: worst label", f"{second['label_accuracy_worst']:.4f}"),
            (
                "second classifier: Fréchet distance / floor",
                f"{second['frechet_distance']:.4f} / {second['frechet_floor']:.4f} = "
                f"{second['frechet_ratio']:.2f}",
            ),
        ]
    if "cas_accuracy" in metrics:
        rows += [
            ("CAS: sample-trained CNN, real test accuracy", _pct(metrics["cas_accuracy"])),
            ("CAS: real-trained CNN (reference)", _pct(metrics["cas_real_accuracy"])),
            ("CAS gap, points", f"{metrics['cas_gap_points']:.2f}"),
        ]
    if "precision" in metrics:
        rows += [
            ("precision (k-NN)", f"{metrics['precision']:.4f}"),
            ("recall (k-NN)", f"{metrics['recall']:.4f}"),
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
                "reconstruction from the posterior mean (BCE; what Reconstruct serves)",
                _nats(metrics, "test_reconstruction_at_mean"),
            ),
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
    if "second_classifier" in metrics:
        second = metrics["second_classifier"]["classifier"]
        lines.append(
            f"- Second judge: a {second['config']['architecture']} CNN (5×5 conv, two stride-2 "
            "3×3 convs, group norm and SiLU, no pooling, then a dense layer), trained the same "
            f"way ({_train_time(second)}), test accuracy {second['test_accuracy']:.4f}; its "
            "dense features are the space of its Fréchet distance and of precision and recall."
        )
    if "cas_accuracy" in metrics:
        cas = metrics["cas_classifier"]
        lines.append(
            f"- CAS: a {cas['architecture']} CNN (convs {cas['channels'][0]} and "
            f"{cas['channels'][1]}, dense {cas['feature_dim']}, dropout {cas['dropout']:g}), "
            f"{cas['optimizer']} with a one-cycle learning rate peaking at {cas['lr']:g}, batch "
            f"{cas['batch_size']}, {cas['epochs']} epochs, trained on "
            f"{metrics['cas_train_images']} balanced prior samples at T = 1 (the decoder's "
            "mean images, labels as requested) and, as the reference, on as many real training "
            "digits; both tested on the 10,000 real test digits, once per seed "
            f"({metrics['cas_seconds_per_training']:.0f} s per training on samples here)."
        )
    if "precision" in metrics:
        lines.append(
            "- Precision and recall (Kynkäänniemi et al. 2019): each point's ball reaches its "
            f"k = {metrics['pr_neighbours']}-th nearest neighbour in its own set; precision is "
            "the share of samples inside some test digit's ball, recall the share of test "
            "digits inside some sample's ball. Validation digits, plain and blurred, are "
            "scored the same way to show the feature space does not punish blur."
        )
    lines.append(f"- Evaluation took {metrics['evaluation_seconds']:.0f} s.")
    return lines
