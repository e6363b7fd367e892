"""`cvae audit`: rank the images of a labeled dataset by how suspicious their labels are.

Every image is scored under every label through the service (Score: the bound on log p(x|y)),
chunk by chunk; each finished chunk is saved in DIR/.audit-partial/, so a killed audit resumes
where it stopped. At the end DIR holds:
- ranking.csv: `index,label,predicted_label,score`, most suspicious first. The score of an image
  with given label y is max over y' != y of log p(x|y') - log p(x|y), in nats (each a bound from
  Score): above 0, another label explains the image better than its own (and is the predicted
  one); the larger, the surer. Ties keep dataset order.
- suspicious.png: the top images with their index, given and predicted labels;
- audit.json: what was audited (dataset digest, model version, samples, seed) and the counts.
"""

from __future__ import annotations

import concurrent.futures as futures
import csv
import hashlib
import io
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cvae.client import Client, RetryPolicy, TlsConfig
from cvae.jobs.atomic import OutputError, atomic_file, remove_stale_temporaries, write_bytes_atomic
from cvae.jobs.image_input import read_images
from cvae.jobs.plan import chunk_seed
from cvae.jobs.score import score_chunks

_LOGGER = logging.getLogger(__name__)
_PARTIAL = ".audit-partial"
AUDIT_RETRY = RetryPolicy(max_attempts=8, initial_backoff_s=0.2, max_backoff_s=10.0)


@dataclass(frozen=True)
class AuditJob:
    """One `cvae audit` invocation."""

    server: str
    dataset: Path
    out: Path
    samples: int = 1
    seed: int = 0
    chunk_size: int = 1000
    """Images per saved chunk: the unit of resume."""
    concurrency: int = 2
    top: int = 64
    """Images on the contact sheet."""
    model_version: str | None = None
    timeout_s: float = 120.0
    progress: bool = True
    tls: TlsConfig | None = None


@dataclass(frozen=True)
class AuditPlan:
    """What determines the audit's numbers; a resumed audit must match it."""

    dataset_sha256: str
    images: int
    model_name: str
    model_version: str
    samples: int
    seed: int
    chunk_size: int

    @property
    def num_chunks(self) -> int:
        return -(-self.images // self.chunk_size)


def dataset_digest(images: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(repr(images.shape).encode())
    digest.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return digest.hexdigest()


def suspicion(bounds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """max over other labels of the bound, minus the bound under the given label (nats)."""
    rows = np.arange(len(labels))
    given = bounds[rows, labels]
    others = bounds.astype(np.float64).copy()
    others[rows, labels] = -np.inf
    return np.asarray(others.max(axis=1) - given)


def ranking(scores: np.ndarray) -> np.ndarray:
    """Indices, most suspicious first; ties in dataset order."""
    return np.argsort(-scores, kind="stable")


class _Work:
    def __init__(self, out: Path) -> None:
        self.path = out / _PARTIAL
        self.chunks = self.path / "chunks"

    def chunk_path(self, index: int) -> Path:
        return self.chunks / f"chunk-{index:06d}.npy"

    def completed(self) -> set[int]:
        if not self.chunks.is_dir():
            return set()
        return {int(p.stem.split("-")[1]) for p in self.chunks.glob("chunk-*.npy")}

    def adopt(self, plan: AuditPlan) -> None:
        try:
            self.chunks.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.chunks)
        except OSError as error:
            raise OutputError(f"cannot create {self.path}: {error.strerror}") from error
        plan_file = self.path / "plan.json"
        if plan_file.is_file():
            existing = json.loads(plan_file.read_text())
            if existing != asdict(plan):
                differ = sorted(k for k, v in asdict(plan).items() if existing.get(k) != v)
                raise OutputError(
                    f"{self.path} holds another audit (differs in {', '.join(differ)}); delete "
                    "it or choose another --out"
                )
            return
        write_bytes_atomic(plan_file, json.dumps(asdict(plan), indent=2).encode())

    def save(self, index: int, bounds: np.ndarray) -> None:
        with atomic_file(self.chunk_path(index)) as stream:
            np.save(stream, bounds.astype(np.float32), allow_pickle=False)

    def load(self, index: int) -> np.ndarray:
        return np.asarray(np.load(self.chunk_path(index), allow_pickle=False))


def _score_chunk(
    client: Client,
    plan: AuditPlan,
    images: np.ndarray,
    labels: np.ndarray,
    index: int,
    per_request: int,
    num_classes: int,
) -> np.ndarray:
    start = index * plan.chunk_size
    stop = min(start + plan.chunk_size, plan.images)
    parts = score_chunks(
        client,
        images[start:stop],
        labels[start:stop],
        samples=plan.samples,
        seed=chunk_seed(plan.seed, index),
        per_request=per_request,
        model_version=plan.model_version,
        num_classes=num_classes,
    )
    bounds = []
    for _, result in parts:
        if result.model_version != plan.model_version:
            raise RuntimeError(f"server answered with model version {result.model_version}")
        bounds.append(result.log_likelihood)
    return np.concatenate(bounds)


def run_audit(job: AuditJob) -> Path:
    """Audit (or resume auditing) the dataset; returns the ranking.csv written."""
    images, labels = read_images(job.dataset)
    if labels is None:
        raise ValueError(f"{job.dataset}: an audit needs labels")
    if job.chunk_size < 1 or job.samples < 0 or job.top < 1:
        raise ValueError("--chunk-size and --top must be positive, --samples at least 0")
    ranking_path = job.out / "ranking.csv"
    work = _Work(job.out)
    if ranking_path.exists() and not work.path.exists():
        if _already_complete(job, dataset_digest(images, labels)):
            _LOGGER.info("%s is already complete", ranking_path)
            return ranking_path
        raise OutputError(
            f"{job.out} already holds another audit; remove it or choose another --out"
        )
    with Client(job.server, timeout_s=job.timeout_s, retry=AUDIT_RETRY, tls=job.tls) as client:
        info = client.model_info(job.model_version, timeout_s=min(job.timeout_s, 30.0))
        bad = labels[(labels < 0) | (labels >= info.num_classes)]
        if bad.size:
            raise ValueError(
                f"{job.dataset}: label {int(bad[0])} is outside 0..{info.num_classes - 1}"
            )
        plan = AuditPlan(
            dataset_digest(images, labels),
            len(images),
            info.name,
            info.version,
            max(job.samples, 1),
            job.seed,
            job.chunk_size,
        )
        work.adopt(plan)
        per_request = (info.max_images_per_request, info.num_classes)
        _fetch_missing(client, plan, work, images, labels, job, per_request)
    bounds = np.concatenate([work.load(index) for index in range(plan.num_chunks)])
    _publish(job, plan, images, labels, bounds)
    shutil.rmtree(work.path)
    return ranking_path


def _already_complete(job: AuditJob, digest: str) -> bool:
    try:
        summary = json.loads((job.out / "audit.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(
        summary.get("dataset_sha256") == digest
        and summary.get("samples") == max(job.samples, 1)
        and summary.get("seed") == job.seed
        and summary.get("chunk_size") == job.chunk_size
        and (job.model_version is None or summary.get("model_version") == job.model_version)
    )


def _fetch_missing(
    client: Client,
    plan: AuditPlan,
    work: _Work,
    images: np.ndarray,
    labels: np.ndarray,
    job: AuditJob,
    per_request: tuple[int, int],
) -> None:
    """`per_request`: (the server's images per request, its number of labels)."""
    done = work.completed()
    todo = [index for index in range(plan.num_chunks) if index not in done]
    already = sum(min(plan.chunk_size, plan.images - k * plan.chunk_size) for k in done)
    if done:
        _LOGGER.info("resuming: %d of %d chunks already scored", len(done), plan.num_chunks)
    bar = tqdm(total=plan.images, initial=already, unit="img", disable=not job.progress)
    with bar, futures.ThreadPoolExecutor(max_workers=max(1, job.concurrency)) as pool:
        pending: dict[futures.Future[np.ndarray], int] = {}
        queue = iter(todo)
        try:
            while True:
                while len(pending) < job.concurrency and (k := next(queue, None)) is not None:
                    arguments = (client, plan, images, labels, k, *per_request)
                    future = pool.submit(_score_chunk, *arguments)
                    pending[future] = k
                if not pending:
                    break
                finished, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
                for future in finished:
                    index = pending.pop(future)
                    bounds = future.result()
                    work.save(index, bounds)
                    bar.update(len(bounds))
        finally:
            for future in pending:
                future.cancel()


def _publish(
    job: AuditJob, plan: AuditPlan, images: np.ndarray, labels: np.ndarray, bounds: np.ndarray
) -> None:
    scores = suspicion(bounds, labels)
    predicted = np.argmax(bounds, axis=1)
    order = ranking(scores)
    table = io.StringIO()
    rows = csv.writer(table, lineterminator="\n")
    rows.writerow(["index", "label", "predicted_label", "score"])
    rows.writerows([int(i), int(labels[i]), int(predicted[i]), f"{scores[i]:.4f}"] for i in order)
    top = order[: job.top]
    sheet = contact_sheet(images[top], top, labels[top], predicted[top])
    write_bytes_atomic(job.out / "suspicious.png", sheet)
    summary: dict[str, Any] = {
        **asdict(plan),
        "dataset": str(job.dataset),
        "predicted_differs": int(np.sum(predicted != labels)),
        "score": "max over other labels of log p(x|y') - log p(x|y_given), nats (bounds)",
        "top": [
            {"index": int(i), "label": int(labels[i]), "predicted_label": int(predicted[i]),
             "score": round(float(scores[i]), 4)}
            for i in order[:10]
        ],
    }  # fmt: skip
    write_bytes_atomic(job.out / "audit.json", (json.dumps(summary, indent=2) + "\n").encode())
    write_bytes_atomic(job.out / "ranking.csv", table.getvalue().encode())  # last: marks done


def contact_sheet(
    images: np.ndarray,
    indices: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    columns: int = 8,
    scale: int = 3,
) -> bytes:
    """PNG bytes: each image enlarged, captioned `#index given->predicted`."""
    from PIL import Image, ImageDraw

    count = len(images)
    rows = max(1, -(-count // columns))
    height, width = images.shape[1:] if count else (28, 28)
    cell_w, cell_h = width * scale + 8, height * scale + 22
    sheet = Image.new("L", (columns * cell_w, rows * cell_h), color=255)
    draw = ImageDraw.Draw(sheet)
    for position, image in enumerate(images):
        row, column = divmod(position, columns)
        left, top = column * cell_w + 4, row * cell_h + 2
        picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="L")
        sheet.paste(picture.resize((width * scale, height * scale), Image.Resampling.NEAREST),
                    (left, top))  # fmt: skip
        text = f"#{int(indices[position])} {int(labels[position])}->{int(predicted[position])}"
        draw.text((left, top + height * scale + 2), text, fill=0)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
