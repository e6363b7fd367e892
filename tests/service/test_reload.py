"""Hot reload under load: new versions swap in with no failed request, every response from one
version, a broken version refused while the old keeps serving, the previous version pinnable."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from cvae.v1 import generator_pb2 as pb
from service.codec import to_uint8
from service.sampler import LatentSampler
from tests.service.load import GenerateLoad
from tests.service.modelrepo import DecoderSpec, write_version
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(180)


def _publish(root: Path, version: str, seed: int, breakage: str | None = None) -> None:
    """Write a version beside the repository, then move it in with one rename (atomic)."""
    staging = root.parent / f"staging-{version}"
    write_version(staging, version, spec=DecoderSpec(seed=seed), breakage=breakage)
    target = root / "cvae-mnist" / version
    if target.exists():
        shutil.rmtree(target)
    (staging / "cvae-mnist" / version).rename(target)
    shutil.rmtree(staging)


def _two_labels(seed: int) -> list[int]:
    return [seed % 10, (seed // 10) % 10]


def _wait_for(condition, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _expected_images(root: Path, version: str, seed: int, labels: list[int]) -> bytes:
    session = ort.InferenceSession(str(root / "cvae-mnist" / version / "model.onnx"))
    latents = LatentSampler(16, seed, 1.0).take(len(labels))
    (images,) = session.run(["image"], {"z": latents, "label": np.array(labels, np.int64)})
    return to_uint8(images).tobytes()


def test_hot_reload_under_load(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_version(root, "1", spec=DecoderSpec(seed=1))
    kept = tmp_path / "kept"  # copies to check answers against, as versions come and go
    server = ServerProcess(root, "--reload-interval-s", "0.2").start()
    try:
        stub = server.stub
        with GenerateLoad(server, _two_labels) as load:
            _wait_for(lambda: len(load.answers) > 20, "answers from version 1")

            _publish(root, "2", seed=2)  # found by the repository watch
            _wait_for(lambda: stub.GetModelInfo(pb.GetModelInfoRequest()).version == "2", "v2")
            count = len(load.answers)
            _wait_for(lambda: len(load.answers) > count + 20, "answers from version 2")

            _publish(root, "3", seed=3, breakage="sha_mismatch")
            server.signal(signal.SIGHUP)  # found at once
            refused = 'outcome="refused"'
            _wait_for(lambda: server.metric("cvae_model_reloads_total", refused) == 1, "refusal")
            count = len(load.answers)
            _wait_for(lambda: len(load.answers) > count + 20, "answers after the refusal")
            assert stub.GetModelInfo(pb.GetModelInfoRequest()).version == "2"

            # The previous version stays loaded for pinned requests.
            pinned = stub.Generate(pb.GenerateRequest(labels=[1], model_version="1"), timeout=30)
            assert pinned.model_version == "1"
            shutil.copytree(root, kept)

            _publish(root, "3", seed=3)  # repaired: its files changed, so it is tried again
            server.signal(signal.SIGHUP)
            _wait_for(lambda: stub.GetModelInfo(pb.GetModelInfoRequest()).version == "3", "v3")
            count = len(load.answers)
            _wait_for(lambda: len(load.answers) > count + 20, "answers from version 3")

        assert load.errors == []
        versions = {version for _, _, version, _ in load.answers}
        assert versions == {"1", "2", "3"}
        for version in ("1", "2"):  # every answer comes wholly from the version it names
            answers = [a for a in load.answers if a[2] == version]
            for seed, labels, _, images in answers[:: max(1, len(answers) // 15)]:
                assert images == _expected_images(kept, version, seed, labels)
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
        assert list(info.available_versions) == ["3", "2"]  # keep 2: version 1 was unloaded
        with pytest.raises(grpc.RpcError) as raised:
            stub.Generate(pb.GenerateRequest(labels=[1], model_version="1"), timeout=30)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        text = server.scrape()
        assert 'cvae_model_info{name="cvae-mnist",version="3"} 1.0' in text
        assert 'version="1"' not in text.split("cvae_model_info", 1)[1].split("# HELP", 1)[0]
        assert "refused model version 3" in server.log()
    finally:
        server.stop()


def test_a_removed_version_folder_rolls_back_to_the_previous(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_version(root, "1", spec=DecoderSpec(seed=1))
    write_version(root, "2", spec=DecoderSpec(seed=2))
    with ServerProcess(root, "--reload-interval-s", "0", metrics=False) as server:
        stub = server.stub
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
        assert (info.version, list(info.available_versions)) == ("2", ["2", "1"])
        shutil.rmtree(root / "cvae-mnist" / "2")
        server.signal(signal.SIGHUP)
        _wait_for(lambda: stub.GetModelInfo(pb.GetModelInfoRequest()).version == "1", "rollback")
        response = stub.Generate(pb.GenerateRequest(labels=[4], seed=1), timeout=30)
        assert response.model_version == "1"
