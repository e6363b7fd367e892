"""Hot reload while callers keep asking: each broken new version is refused while the old one
keeps serving, then a good version swaps in; no call fails and every answer, checked image for
image, comes wholly from the one version it names.

tests/service/test_reload.py covers the repository watch, a sha256 mismatch and the pinning of
the previous version; this adds the other breakages and checks every answer, not a sample.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cvae.v1 import generator_pb2 as pb
from service.codec import to_uint8
from service.sampler import LatentSampler
from tests.service.load import GenerateLoad
from tests.service.modelrepo import DecoderSpec, write_version
from tests.service.serverproc import ServerProcess
from tests.service.test_reload import _publish, _wait_for

pytestmark = pytest.mark.timeout(300)
_BREAKAGES = ("truncated_onnx", "wrong_input_names", "wrong_output_shape", "sha_mismatch")
_IMAGES_PER_CALL = 8
_REFUSALS = 'outcome="refused"'


def _eight_labels(seed: int) -> list[int]:
    return [(seed + i) % 10 for i in range(_IMAGES_PER_CALL)]


def _more_answers(callers: GenerateLoad, how_many: int, what: str) -> None:
    target = callers.count() + how_many
    _wait_for(lambda: callers.count() >= target, what)


def test_broken_versions_are_refused_under_load_and_a_good_one_swaps_in_cleanly(
    tmp_path: Path,
) -> None:
    root = tmp_path / "models"
    write_version(root, "1", spec=DecoderSpec(seed=1))
    server = ServerProcess(root, "--reload-interval-s", "0").start()  # SIGHUP only
    info = pb.GetModelInfoRequest()
    good = str(len(_BREAKAGES) + 2)
    try:
        stub = server.stub
        with GenerateLoad(server, _eight_labels) as callers:
            _more_answers(callers, 20, "answers from version 1")
            for number, breakage in enumerate(_BREAKAGES, start=2):
                _publish(root, str(number), seed=number, breakage=breakage)
                server.signal(signal.SIGHUP)
                _wait_for(
                    lambda n=number: server.metric("cvae_model_reloads_total", _REFUSALS) == n - 1,
                    f"the refusal of {breakage}",
                )
                _more_answers(callers, 10, f"answers after refusing {breakage}")
                assert stub.GetModelInfo(info, timeout=30).version == "1"
            _publish(root, good, seed=int(good))
            server.signal(signal.SIGHUP)
            _wait_for(lambda: stub.GetModelInfo(info, timeout=30).version == good, "the swap")
            _more_answers(callers, 20, f"answers from version {good}")

        assert callers.errors == []
        assert {version for _, _, version, _ in callers.answers} == {"1", good}
        sessions = {
            version: ort.InferenceSession(str(root / "cvae-mnist" / version / "model.onnx"))
            for version in ("1", good)
        }
        for seed, labels, version, images in callers.answers:
            latents = LatentSampler(16, seed, 1.0).take(len(labels))
            (expected,) = sessions[version].run(
                ["image"], {"z": latents, "label": np.array(labels, np.int64)}
            )
            assert images == to_uint8(expected).tobytes(), (seed, version)
        log = server.log()
        for number in range(2, len(_BREAKAGES) + 2):
            assert f"refused model version {number}: " in log
        assert "graph inputs" in log and "warm-up output" in log and "onnx_sha256" in log
    finally:
        server.stop()
