"""The numbers of the real-image RPCs on the real MNIST test split, through a real `cvae serve`:
score as a classifier, `cvae audit` on 1% flipped labels (precision at k), restyle accuracy by the
evaluator's classifier, reconstruction error, and Score's ELBO against the evaluator's figure.

    python -m bench.real_images --repository models --version 3

writes docs/real-images-numbers.md, docs/real-images-numbers.json, docs/images/restyle.png and
docs/images/audit-clean-top.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.profile import group_cpu_seconds
from bench.servers import ServerProcess, free_port, grpc_serving, running
from bench.stats import back_to_back
from cvae.client import Client, Encoding
from cvae.jobs.audit import AuditJob, run_audit
from cvae.jobs.preview import save_png
from cvae.jobs.restyle import restyle_grid
from cvae.jobs.writers import write_npz

_LOGGER = logging.getLogger("bench.real_images")
_ROOT = Path(__file__).resolve().parent.parent
_FLIP_SEED = 2026
_TOP_FRACTIONS = (0.005, 0.01, 0.02)


def flip_labels(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(new labels, flipped indices): `fraction` of the labels moved to another label at random."""
    rng = np.random.default_rng(seed)
    count = round(len(labels) * fraction)
    flipped = np.sort(rng.choice(len(labels), size=count, replace=False))
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, 10, size=count)) % 10
    return noisy, flipped


def precision_at(order: np.ndarray, flipped: np.ndarray, fraction: float) -> dict[str, float]:
    k = round(len(order) * fraction)
    found = int(np.isin(order[:k], flipped).sum())
    return {"k": k, "flipped_in_top_k": found, "precision": found / k,
            "recall": found / len(flipped)}  # fmt: skip


def _ranking(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    return table[:, 0].astype(np.int64), table[:, 2].astype(np.int64), table[:, 3]


def _bce(images: np.ndarray, means: np.ndarray) -> np.ndarray:
    p = np.clip(means.reshape(len(means), -1).astype(np.float64), 1e-7, 1 - 1e-7)
    x = images.reshape(len(images), -1).astype(np.float64)
    return np.asarray(-(x * np.log(p) + (1 - x) * np.log1p(-p)).sum(axis=1))


_IN_FLIGHT = ((1, ""), (2, "_2"))  # calls in flight, and the key suffix of their figures


def _rate(call: Any, images: int, seconds: float, in_flight: int = 1) -> float:
    """Images per second of `call()` repeated for about `seconds` by `in_flight` threads, each
    making one call after another (after one warm-up call)."""
    return _calls(call, images, seconds, in_flight)[0]


def _calls(call: Any, images: int, seconds: float, in_flight: int) -> tuple[float, int]:
    """(images per second, calls made counting the warm-up) of `_rate`."""
    call()
    calls, elapsed = back_to_back(call, seconds, in_flight)
    return calls * images / elapsed, calls + 1


def _served_rate(
    call: Any, seconds: float, in_flight: int, server_pid: int
) -> tuple[float, float, float]:
    """(images per second, server CPU ms per call, this client's CPU ms per call) of `call`."""
    server_cpu, client_cpu = group_cpu_seconds(server_pid), time.process_time()
    rate, done = _calls(call, 256, seconds, in_flight)
    return (
        rate,
        1e3 * (group_cpu_seconds(server_pid) - server_cpu) / done,
        1e3 * (time.process_time() - client_cpu) / done,
    )


def throughput(
    client: Client,
    server_pid: int,
    folder: Path,
    images: np.ndarray,
    labels: np.ndarray,
    seconds: float,
) -> dict[str, Any]:
    """Images per second of each RPC at batch 256 through the server, against onnxruntime in
    this process running the same graphs on the same work: one call at a time, and two calls in
    flight (what `cvae audit` and `cvae generate` keep by default, --concurrency 2). Each served
    rate is compared with the better of the two in-process rates; the CPU the server and this
    client spent per call says where a served call's time went."""
    import onnxruntime as ort

    from service.encoding import importance_weighted_bound, log_likelihood_bound

    options = ort.SessionOptions()
    options.intra_op_num_threads = 0  # onnxruntime's default: every core
    encoder = ort.InferenceSession(str(folder / "encoder.onnx"), options)
    decoder = ort.InferenceSession(str(folder / "model.onnx"), options)
    x, y = images[:256], labels[:256]
    # What datasets hold and `cvae audit` sends: 8-bit pixels, a quarter of float32's bytes.
    # In process they must become float32 in [0, 1] first, so that conversion is timed there.
    x8 = np.rint(x * 255).astype(np.uint8)

    def encode() -> tuple[np.ndarray, np.ndarray]:
        mean, log_variance = encoder.run(["mean", "log_variance"], {"image": x, "label": y})
        return mean, log_variance

    def encode_uint8() -> None:
        encoder.run(["mean", "log_variance"], {"image": x8.astype(np.float32) / 255, "label": y})

    def reconstruct() -> None:
        mean, _ = encode()
        decoder.run(["image"], {"z": mean, "label": y})

    posterior_path = folder / "posterior.onnx"
    posterior = (
        ort.InferenceSession(str(posterior_path), options) if posterior_path.exists() else None
    )

    def score() -> None:
        """What the server runs for Score at k = 1: with a posterior sampler, it then the
        decoder; without, the encoder's Gaussian then the decoder."""
        noise = np.random.default_rng(0).standard_normal((10, 256, 16), dtype=np.float32)
        for label in range(10):
            rows = np.full(256, label, dtype=np.int64)
            if posterior is not None:
                feeds = {"image": x, "label": rows, "noise": noise[label]}
                z, log_density = posterior.run(["latent", "log_density"], feeds)
                (means,) = decoder.run(["image"], {"z": z, "label": rows})
                importance_weighted_bound(x, means, z, log_density, 1)
                continue
            mean, log_variance = encoder.run(["mean", "log_variance"], {"image": x, "label": rows})
            z = (mean + np.exp(0.5 * log_variance) * noise[label]).astype(np.float32)
            (means,) = decoder.run(["image"], {"z": z, "label": rows})
            log_likelihood_bound(x, means, z, mean, log_variance, 1)

    local = {"Encode": encode, "Encode (uint8 pixels)": encode_uint8, "Reconstruct": reconstruct,
             "Restyle": reconstruct, "Score": score}  # fmt: skip
    remote = {
        "Encode": lambda: client.encode(x, y),
        "Encode (uint8 pixels)": lambda: client.encode(x8, y),
        "Reconstruct": lambda: client.reconstruct(x, y, omit_latents=True),
        "Restyle": lambda: client.restyle(x, y, [3], omit_latents=True),
        "Score": lambda: client.score(x, seed=0),
    }
    rows = {}
    for name in remote:
        row: dict[str, Any] = {}
        for in_flight, suffix in _IN_FLIGHT:
            served, server_ms, client_ms = _served_rate(
                remote[name], seconds, in_flight, server_pid
            )
            row.update(
                {
                    f"served{suffix}": round(served),
                    f"server_cpu_ms{suffix}": round(server_ms, 2),
                    f"client_cpu_ms{suffix}": round(client_ms, 2),
                    f"in_process{suffix}": round(_rate(local[name], 256, seconds, in_flight)),
                }
            )
        best = max(row[f"in_process{suffix}"] for _, suffix in _IN_FLIGHT)
        for _, suffix in _IN_FLIGHT:
            row[f"ratio{suffix}"] = round(row[f"served{suffix}"] / best, 3)  # fmt: skip
        rows[name] = row
    return rows


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from training.data import load_mnist
    from training.evaluate import classifier as classifier_module
    from training.evaluate.classifier import classify
    from training.evaluate.classifier_cache import load_or_train_classifier

    splits = load_mnist()
    test_x = splits.test[0].reshape(-1, 28, 28).astype(np.float32)
    test_y = np.asarray(splits.test[1], dtype=np.int64)
    if args.limit:
        test_x, test_y = test_x[: args.limit], test_y[: args.limit]
    as_uint8 = np.rint(test_x * 255).astype(np.uint8)
    lossless = bool(np.array_equal(as_uint8.astype(np.float32) / 255, test_x))
    results: dict[str, Any] = {"test_images": len(test_y), "uint8_lossless": lossless}
    port = free_port()
    server = ServerProcess(
        "cvae serve",
        [sys.executable, "-m", "cvae", "serve", "--model-repository", str(args.repository),
         "--model-name", args.model_name, "--host", "127.0.0.1", "--port", str(port),
         "--metrics-port", "0"],
        work / "server.log",
    )  # fmt: skip
    target = f"127.0.0.1:{port}"
    with running(server, grpc_serving(port), 300), Client(target, timeout_s=600) as client:
        info = client.model_info(args.version)
        results["model"] = {"name": info.name, "version": info.version}
        if not info.has_encoder:
            raise SystemExit(f"model version {info.version} ships no encoder: nothing to measure")
        results["evaluator"] = {
            k: info.metrics[k]
            for k in ("test_negative_elbo", "test_reconstruction", "test_reconstruction_at_mean")
            if k in info.metrics
        }  # fmt: skip

        # Audit of the clean and of the 1%-flipped test split (the real `cvae audit` code).
        clean_path, noisy_path = work / "clean.npz", work / "noisy.npz"
        noisy_y, flipped = flip_labels(test_y, 0.01, _FLIP_SEED)
        write_npz(clean_path, [as_uint8], test_y)
        write_npz(noisy_path, [as_uint8], noisy_y)
        audits: dict[str, Any] = {}
        for name, path in (("clean", clean_path), ("flipped", noisy_path)):
            started = time.monotonic()
            job = AuditJob(target, path, work / f"audit-{name}", model_version=info.version,
                           seed=args.seed, progress=False, timeout_s=600)  # fmt: skip
            run_audit(job)
            audits[name] = {"seconds": round(time.monotonic() - started, 1)}
        order, _, _ = _ranking(work / "audit-flipped" / "ranking.csv")
        audits["flipped"].update(
            flip_seed=_FLIP_SEED,
            flipped=len(flipped),
            at={f"{fraction:.1%}": precision_at(order, flipped, fraction)
                for fraction in _TOP_FRACTIONS},
        )  # fmt: skip
        clean_order, clean_predicted, clean_scores = _ranking(work / "audit-clean" / "ranking.csv")
        audits["clean"]["top"] = [
            {"index": int(i), "label": int(test_y[i]), "predicted": int(p), "score": float(s)}
            for i, p, s in zip(clean_order[:12], clean_predicted[:12], clean_scores[:12],
                               strict=True)
        ]  # fmt: skip
        (work / "audit-clean" / "suspicious.png").replace(args.images / "audit-clean-top.png")
        results["audit"] = audits
        by_index = np.empty(len(test_y), dtype=np.int64)
        by_index[clean_order] = clean_predicted
        results["score_classifier"] = {"1": float(np.mean(by_index == test_y))}

        # Score with more importance samples on a subset, and the ELBO against the evaluator's.
        elbo_parts = [
            client.score(test_x[s : s + 1000], test_y[s : s + 1000], seed=args.seed + s)
            for s in range(0, len(test_y), 1000)
        ]
        given = np.concatenate([part.label_log_likelihood for part in elbo_parts])  # type: ignore[misc]
        results["score_negative_elbo"] = float(-given.mean())
        subset = args.iw_images
        for k in args.samples:
            started = time.monotonic()
            step = info.max_images_per_request // k
            predictions = np.concatenate([
                client.score(test_x[s : min(s + step, subset)], samples=k, seed=s).predicted_labels
                for s in range(0, subset, step)
            ])  # fmt: skip
            results["score_classifier"][f"{k} (first {subset})"] = float(
                np.mean(predictions == test_y[:subset])
            )
            results.setdefault("score_seconds", {})[str(k)] = round(time.monotonic() - started, 1)

        # Reconstruct: BCE of each test image against the decoded posterior mean.
        step = info.max_images_per_request
        rebuilt = np.concatenate([
            client.reconstruct(test_x[s : s + step], test_y[s : s + step],
                               encoding=Encoding.FLOAT32, omit_latents=True).images
            for s in range(0, len(test_y), step)
        ])  # fmt: skip
        results["reconstruction_at_posterior_mean"] = float(_bce(test_x, rebuilt).mean())

        # Restyle: every test digit (or --restyle-images of them) in every label, classified.
        trained = load_or_train_classifier(splits.train, splits.test, progress=False)
        count = min(args.restyle_images, len(test_y))
        per = max(1, info.max_images_per_request // 10)
        restyled = np.concatenate([
            client.restyle(test_x[s : min(s + per, count)], test_y[s : min(s + per, count)],
                           range(10), encoding=Encoding.FLOAT32, omit_latents=True).images
            for s in range(0, count, per)
        ])  # fmt: skip
        targets = np.tile(np.arange(10), count)
        other = targets != np.repeat(test_y[:count], 10)
        judges = {"primary": trained}
        second = getattr(classifier_module, "SECOND_CLASSIFIER", None)
        if second is not None:  # the evaluator's second judge, where it has one
            judges["second"] = load_or_train_classifier(
                splits.train, splits.test, config=second, progress=False
            )
        results["restyle"] = {"images": count, "judges": {}}
        for name, judge in judges.items():
            hit = classify(judge.model, restyled).predictions == targets
            results["restyle"]["judges"][name] = {
                "accuracy": float(hit.mean()),
                "accuracy_other_labels": float(hit[other].mean()),
                "classifier_test_accuracy": judge.test_accuracy,
            }
        first = [int(np.flatnonzero(test_y == digit)[0]) for digit in range(10)]
        picture = restyle_grid(client, as_uint8[first], test_y[first], tuple(range(10)), step,
                               info.version)  # fmt: skip
        save_png(picture, args.images / "restyle.png")
        if args.throughput_seconds > 0:
            folder = args.repository / info.name / info.version
            results["throughput_256"] = throughput(
                client, server.pid, folder, test_x, test_y, args.throughput_seconds
            )
    return results


def render(results: dict[str, Any]) -> str:
    audit = results["audit"]
    lines = [
        "# Real images through the service: measured",
        "",
        f"`python -m bench.real_images` on model {results['model']['name']} version "
        f"{results['model']['version']}, the real MNIST test split ({results['test_images']} "
        "images), through a real `cvae serve`. Every number below comes from "
        "docs/real-images-numbers.json, which that command rewrites.",
        "",
        "## `cvae audit` on the test split with 1% of its labels flipped",
        "",
        f"{audit['flipped']['flipped']} labels moved to another label at random (seed "
        f"{audit['flipped']['flip_seed']}); score: best other label's ELBO minus the given "
        "label's.",
        "",
        "| top of the ranking | k | flipped among them | precision | recall |",
        "|---|---|---|---|---|",
    ]
    for name, row in audit["flipped"]["at"].items():
        lines.append(
            f"| {name} | {row['k']} | {row['flipped_in_top_k']} | {row['precision']:.3f} | "
            f"{row['recall']:.3f} |"
        )
    lines += [
        "",
        f"Audit time: {audit['flipped']['seconds']} s for the flipped split, "
        f"{audit['clean']['seconds']} s for the clean one.",
        "",
        "Top of the ranking of the unflipped test split (index in the MNIST test split, its "
        "label, the predicted one, the score in nats); the contact sheet is "
        "[images/audit-clean-top.png](images/audit-clean-top.png):",
        "",
        "| index | label | predicted | score |",
        "|---|---|---|---|",
        *(f"| {r['index']} | {r['label']} | {r['predicted']} | {r['score']:.1f} |"
          for r in audit["clean"]["top"]),
        "",
        "## Score as a classifier (argmax over labels of the bound)",
        "",
        "| samples k | accuracy |",
        "|---|---|",
        *(f"| {k} | {v:.4f} |" for k, v in results["score_classifier"].items()),
        "",
        "## Restyle",
        "",
        f"{results['restyle']['images']} real test digits, each restyled into all 10 labels, "
        "judged by the evaluator's classifiers (training/evaluate/classifier.py): the share "
        "classified as their target label.",
        "",
        "| judge | its test accuracy | restyled as the target | targets other than the own label |",
        "|---|---|---|---|",
        *(f"| {name} | {j['classifier_test_accuracy']:.4f} | {j['accuracy']:.4f} | "
          f"{j['accuracy_other_labels']:.4f} |"
          for name, j in results["restyle"]["judges"].items()),
        "",
        "![the first test digit of each label (left column), restyled into 0..9]"
        "(images/restyle.png)",
        "",
        "## Reconstruction and the ELBO",
        "",
        f"- Score's test negative ELBO (k = 1, under the true labels): "
        f"{results['score_negative_elbo']:.2f} nats per image; the evaluator's figure in "
        f"model.json: {results['evaluator'].get('test_negative_elbo', float('nan')):.2f}.",
        f"- Reconstruct (the posterior mean decoded): BCE "
        f"{results['reconstruction_at_posterior_mean']:.2f} nats per image; the evaluator's "
        f"test reconstruction from the posterior mean: "
        f"{results['evaluator'].get('test_reconstruction_at_mean', float('nan')):.2f} (from "
        f"one z sample, the ELBO's term: "
        f"{results['evaluator'].get('test_reconstruction', float('nan')):.2f}).",
        "",
    ]  # fmt: skip
    if "throughput_256" in results:
        lines += [
            "## Throughput at batch 256 (images per second)",
            "",
            "Served: the RPC called with 256 images (float32 pixels, except the uint8 row: the "
            "same images as 8-bit pixels, as datasets and `cvae audit` send them; Restyle: 256 "
            "images x 1 target; Score: k = 1, all 10 labels) by one client, one call at a time, "
            "then from two threads with two calls in flight (what `cvae audit` and `cvae "
            "generate` keep by default, `--concurrency 2`). In process: onnxruntime running the "
            "same graphs on the same work in the bench's process, every core, one call at a time "
            "and two in flight. Each ratio is a served rate over the better in-process one. The "
            "client runs on the same cores as the server; the CPU columns (milliseconds per "
            "call, two in flight) say what the server's process and the client's spent. The "
            "machine is shared, so these vary from run to run.",
            "",
            "| RPC | served, 1 in flight | served, 2 in flight | in process, 1 | in process, 2 | "
            "ratio, 1 in flight | ratio, 2 in flight | server CPU ms/call | client CPU ms/call |",
            "|---|---|---|---|---|---|---|---|---|",
            *(_throughput_row(name, row) for name, row in results["throughput_256"].items()),
            "",
        ]  # fmt: skip
    return "\n".join(lines)


def _throughput_row(name: str, row: dict[str, Any]) -> str:
    if "ratio_2" not in row:  # a results file from before two calls in flight were measured
        old = (row["served"], row["in_process"], row["ratio"])
        return "| {} | {} | — | {} | — | {:.2f} | — | — | — |".format(name, *old)
    return (
        f"| {name} | {row['served']} | {row['served_2']} | {row['in_process']} | "
        f"{row['in_process_2']} | {row['ratio']:.2f} | {row['ratio_2']:.2f} | "
        f"{row['server_cpu_ms_2']:.1f} | {row['client_cpu_ms_2']:.1f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=_ROOT / "models")
    parser.add_argument("--model-name", default="cvae-mnist", help="model (default: cvae-mnist)")
    parser.add_argument("--version", help="model version (default: the newest)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, nargs="*", default=[1, 16])
    parser.add_argument("--iw-images", type=int, default=1000, help="images scored per k")
    parser.add_argument("--restyle-images", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=0, help="only the first N test images")
    parser.add_argument("--throughput-seconds", type=float, default=10.0, help="0: skip")
    parser.add_argument("--out", type=Path, default=_ROOT / "docs" / "real-images-numbers.md")
    parser.add_argument("--images", type=Path, default=_ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.images.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="real-images-") as folder:
        results = measure(args, Path(folder))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.write_text(render(results))
    _LOGGER.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
