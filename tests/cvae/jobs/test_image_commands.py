"""`cvae restyle`, `cvae score` and `cvae audit` against a real server on a real encoder graph."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvae.cli import main
from cvae.client import Client
from cvae.jobs.audit import AuditPlan, _Work, suspicion
from cvae.jobs.plan import chunk_seed
from cvae.jobs.readers import read_dataset
from cvae.jobs.score import score_chunks
from cvae.jobs.writers import write_npz
from service.codec import to_png
from tests.cvae.real_images import IMAGES, LABELS

pytestmark = pytest.mark.timeout(300)


def _dataset(tmp_path: Path, images: np.ndarray = IMAGES, labels: np.ndarray = LABELS) -> Path:
    path = tmp_path / "real.npz"
    write_npz(path, [images], labels)
    return path


def test_restyle_command_writes_a_grid_and_a_dataset(encoder_server: str, tmp_path: Path) -> None:
    single = tmp_path / "seven.png"
    single.write_bytes(to_png(IMAGES[7:8])[0])
    grid = tmp_path / "grid.png"
    server = ["--server", encoder_server]
    assert main(["restyle", str(single), "--label", "7", "--out", str(grid), *server]) == 0
    with Image.open(grid) as picture:  # 1 row x (source + 10 targets), 2x enlarged, padded
        assert picture.size == (2 * (11 * 30 + 2), 2 * (30 + 2))
    out = tmp_path / "restyled.npz"
    command = ["restyle", str(_dataset(tmp_path)), "--targets", "2,8", "--out", str(out)]
    assert main([*command, "--no-progress", *server]) == 0
    images, labels = read_dataset(out)
    assert labels.tolist() == [2, 8] * 10
    with Client(encoder_server) as client:
        assert np.array_equal(images, client.restyle(IMAGES, LABELS, [2, 8]).images)
    assert main([*command, *server]) == 1  # the output exists: refused, not overwritten


def test_score_command_writes_csv_and_reports_accuracy(
    encoder_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scores.csv"
    command = ["score", str(_dataset(tmp_path)), "--out", str(out), "--seed", "5"]
    assert main([*command, "--no-progress", "--server", encoder_server]) == 0
    rows = list(csv.DictReader(out.open()))
    with Client(encoder_server) as client:
        scores = client.score(IMAGES, LABELS, seed=5)
    assert [int(r["predicted_label"]) for r in rows] == scores.predicted_labels.tolist()
    assert [int(r["label"]) for r in rows] == LABELS.tolist()
    np.testing.assert_allclose(
        [float(r["log_likelihood_3"]) for r in rows], scores.log_likelihood[:, 3], atol=1e-3
    )
    correct = int(np.sum(scores.predicted_labels == LABELS))
    assert f"accuracy {correct / 10:.4f} ({correct}/10)" in capsys.readouterr().err


def _ranking(folder: Path) -> list[dict[str, str]]:
    with open(folder / "ranking.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def test_audit_ranks_by_the_documented_score_and_resumes(
    encoder_server: str, tmp_path: Path
) -> None:
    dataset = _dataset(tmp_path)
    first = tmp_path / "audit"
    args = ["--chunk-size", "4", "--seed", "11", "--top", "6", "--no-progress"]
    audit = ["audit", str(dataset), *args, "--server", encoder_server]
    assert main([*audit, "--out", str(first)]) == 0
    with Client(encoder_server) as client:  # chunks of 4 images, each with its derived seed
        bounds = np.concatenate(
            [client.score(IMAGES[s : s + 4], seed=chunk_seed(11, s // 4)).log_likelihood
             for s in range(0, 10, 4)]
        )  # fmt: skip
    expected = suspicion(bounds, LABELS)
    rows = _ranking(first)
    assert list(rows[0]) == ["index", "label", "predicted_label", "score"]
    assert [int(r["index"]) for r in rows] == np.argsort(-expected, kind="stable").tolist()
    for row in rows:
        index = int(row["index"])
        assert int(row["label"]) == LABELS[index]
        assert int(row["predicted_label"]) == int(np.argmax(bounds[index]))
        assert float(row["score"]) == pytest.approx(expected[index], abs=1e-3)
        assert (float(row["score"]) > 0) == (int(row["predicted_label"]) != LABELS[index])
    with Image.open(first / "suspicious.png") as sheet:
        assert sheet.size == (8 * (28 * 3 + 8), 1 * (28 * 3 + 22))
    summary = json.loads((first / "audit.json").read_text())
    assert summary["model_version"] == "2" and summary["images"] == 10
    assert not (first / ".audit-partial").exists()
    before = (first / "ranking.csv").read_bytes()
    assert main([*audit, "--out", str(first)]) == 0  # already complete: nothing changes
    assert (first / "ranking.csv").read_bytes() == before

    # A run interrupted after chunk 1: its saved bounds are used, the other chunks computed.
    resumed = tmp_path / "resumed"
    plan = AuditPlan(**{k: summary[k] for k in AuditPlan.__dataclass_fields__})
    work = _Work(resumed)
    work.adopt(plan)
    planted = bounds[4:8].copy()
    planted[np.arange(4), LABELS[4:8]] = -1e6  # the given labels now look hopeless
    work.save(1, planted)
    assert main([*audit, "--out", str(resumed)]) == 0
    top = [int(r["index"]) for r in _ranking(resumed)[:4]]
    assert sorted(top) == [4, 5, 6, 7]
    rest = {int(r["index"]): float(r["score"]) for r in _ranking(resumed)[4:]}
    assert rest == {int(r["index"]): float(r["score"]) for r in rows if int(r["index"]) in rest}

    # Another audit in the same place is refused instead of mixed in.
    assert main([*audit[:-2], "--seed", "12", "--server", encoder_server, "--out", str(first)]) == 1


def test_score_requests_are_sized_by_their_decoder_rows(encoder_server: str) -> None:
    """Each request's rows (images x samples x labels) are at most the per-request limit, so two
    in flight fit the queue: requests of that many *images* (x10 labels) found it full."""
    with Client(encoder_server) as client:
        info = client.model_info()
        images = np.repeat(IMAGES, 8, axis=0)
        parts = list(
            score_chunks(
                client, images, None, samples=2, seed=1, per_request=40,
                model_version=info.version, num_classes=info.num_classes,
            )
        )  # fmt: skip
    sizes = [len(result.predicted_labels) for _, result in parts]
    assert max(sizes) * 2 * info.num_classes <= 40
    assert sum(sizes) == len(images)
    assert [offset for offset, _ in parts] == [sum(sizes[:i]) for i in range(len(sizes))]
