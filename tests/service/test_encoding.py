"""Encode, Reconstruct, Restyle and Score against a real `cvae serve` on real onnxruntime graphs:
answers checked against the graphs run directly, seeds, layouts, validation, versions without an
encoder, metrics, and a Score bigger than the queue."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from cvae.v1 import generator_pb2 as pb
from tests.service.modelrepo import write_version
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(180)
_RNG = np.random.default_rng(7)
IMAGES = (_RNG.random((5, 28, 28)) ** 3).astype(np.float32)  # mostly dark, like digits
LABELS = [3, 1, 4, 1, 5]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1 without an encoder, version 2 with one."""
    root = tmp_path_factory.mktemp("encoding") / "models"
    write_version(root, "1")
    write_version(root, "2", encoder=True)
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo, "--max-delay-ms", "5") as running:
        yield running


class Graphs:
    """The version's decoder and encoder run directly by onnxruntime: the reference."""

    def __init__(self, folder: Path) -> None:
        self.decoder = ort.InferenceSession(str(folder / "model.onnx"))
        self.encoder = ort.InferenceSession(str(folder / "encoder.onnx"))

    def encode(self, images: np.ndarray, labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
        feeds = {"image": images, "label": np.asarray(labels, dtype=np.int64)}
        mean, log_variance = self.encoder.run(["mean", "log_variance"], feeds)
        return mean, log_variance

    def decode(self, z: np.ndarray, labels: list[int] | np.ndarray) -> np.ndarray:
        feeds = {"z": z.astype(np.float32), "label": np.asarray(labels, dtype=np.int64)}
        (images,) = self.decoder.run(["image"], feeds)
        return np.asarray(images)


@pytest.fixture(scope="module")
def graphs(repo: Path) -> Graphs:
    return Graphs(repo / "cvae-mnist" / "2")


def tensor(array: np.ndarray) -> pb.Tensor:
    return pb.Tensor(shape=list(array.shape), dtype=array.dtype.name, data=array.tobytes())


def array(message: pb.Tensor) -> np.ndarray:
    dtype = {"uint8": np.uint8, "float32": np.dtype("<f4")}[message.dtype]
    return np.frombuffer(message.data, dtype=dtype).reshape(tuple(message.shape))


def pngs(images: np.ndarray) -> list[bytes]:
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image, mode="L").save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded


def test_model_info_says_which_versions_have_an_encoder(server: ServerProcess) -> None:
    assert server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30).has_encoder
    old = server.stub.GetModelInfo(pb.GetModelInfoRequest(model_version="1"), timeout=30)
    assert not old.has_encoder


def test_encode_matches_the_encoder_graph_for_every_input_form(
    server: ServerProcess, graphs: Graphs
) -> None:
    response = server.stub.Encode(
        pb.EncodeRequest(images=tensor(IMAGES), labels=LABELS), timeout=30
    )
    mean, log_variance = graphs.encode(IMAGES, LABELS)
    np.testing.assert_array_equal(array(response.mean), mean)
    np.testing.assert_array_equal(array(response.log_variance), log_variance)
    assert (response.model_version, list(response.labels)) == ("2", LABELS)
    as_uint8 = np.rint(IMAGES * 255).astype(np.uint8)
    expected = graphs.encode(as_uint8.astype(np.float32) / np.float32(255), LABELS)[0]
    by_tensor = server.stub.Encode(pb.EncodeRequest(images=tensor(as_uint8), labels=LABELS))
    by_png = server.stub.Encode(pb.EncodeRequest(png=pngs(as_uint8), labels=LABELS))
    np.testing.assert_allclose(array(by_tensor.mean), expected, rtol=0, atol=1e-5)
    assert by_png.mean.data == by_tensor.mean.data


def test_reconstruct_decodes_the_posterior_mean_under_its_own_label(
    server: ServerProcess, graphs: Graphs
) -> None:
    request = pb.ReconstructRequest(images=tensor(IMAGES), labels=LABELS, encoding=pb.FLOAT32)
    response = server.stub.Reconstruct(request, timeout=30)
    mean, _ = graphs.encode(IMAGES, LABELS)
    np.testing.assert_array_equal(array(response.images), graphs.decode(mean, LABELS))
    np.testing.assert_array_equal(array(response.latents), mean)
    assert list(response.labels) == LABELS and response.model_version == "2"
    as_png = server.stub.Reconstruct(
        pb.ReconstructRequest(images=tensor(IMAGES), labels=LABELS, encoding=pb.PNG,
                              omit_latents=True), timeout=30,
    )  # fmt: skip
    assert len(as_png.png) == 5 and not as_png.latents.data


def test_restyle_is_image_major_every_image_in_every_target(
    server: ServerProcess, graphs: Graphs
) -> None:
    targets = [9, 0, 7]
    request = pb.RestyleRequest(
        images=tensor(IMAGES), labels=LABELS, target_labels=targets, encoding=pb.FLOAT32
    )
    response = server.stub.Restyle(request, timeout=30)
    images = array(response.images)
    assert images.shape == (15, 28, 28)
    assert list(response.labels) == targets * 5
    mean, _ = graphs.encode(IMAGES, LABELS)
    for index in range(5):
        expected = graphs.decode(np.repeat(mean[index : index + 1], 3, axis=0), targets)
        np.testing.assert_array_equal(images[index * 3 : index * 3 + 3], expected)
    np.testing.assert_array_equal(array(response.latents), np.repeat(mean, 3, axis=0))
    one = server.stub.Restyle(
        pb.RestyleRequest(images=tensor(IMAGES[:1]), labels=[3], target_labels=range(10)),
        timeout=30,
    )
    assert array(one.images).shape == (10, 28, 28) and list(one.labels) == list(range(10))


def _reference_bound(graphs: Graphs, images: np.ndarray, seed: int, samples: int) -> np.ndarray:
    """The bound written out independently of service/encoding.py, on the graphs directly."""
    count = len(images)
    noise = np.random.Generator(np.random.PCG64(seed)).standard_normal(
        (10, count, samples, 16), dtype=np.float32
    )
    bounds = np.zeros((count, 10))
    for label in range(10):
        mean, log_variance = graphs.encode(images, [label] * count)
        for i in range(count):
            z = mean[i] + np.exp(0.5 * log_variance[i]) * noise[label, i]  # (k, 16)
            p = graphs.decode(z, [label] * samples).reshape(samples, -1).astype(np.float64)
            p = np.clip(p, 1e-7, 1 - 1e-7)
            x = images[i].reshape(-1).astype(np.float64)
            log_px = (x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=1)
            mu, lv = mean[i].astype(np.float64), log_variance[i].astype(np.float64)
            if samples == 1:
                kl = 0.5 * np.sum(mu**2 + np.exp(lv) - 1 - lv)
                bounds[i, label] = log_px[0] - kl
                continue
            zz = z.astype(np.float64)
            log_prior = -0.5 * np.sum(zz**2 + math.log(2 * math.pi), axis=1)
            log_q = -0.5 * np.sum((zz - mu) ** 2 / np.exp(lv) + lv + math.log(2 * math.pi), axis=1)
            log_w = log_px + log_prior - log_q
            bounds[i, label] = np.logaddexp.reduce(log_w) - math.log(samples)
    return bounds


@pytest.mark.parametrize("samples", [0, 1, 6])
def test_score_is_the_bound_under_every_label_and_is_seeded(
    server: ServerProcess, graphs: Graphs, samples: int
) -> None:
    request = pb.ScoreRequest(images=tensor(IMAGES), labels=LABELS, samples=samples, seed=42)
    response = server.stub.Score(request, timeout=60)
    k = max(samples, 1)
    assert (response.seed, response.samples, response.model_version) == (42, k, "2")
    bounds = array(response.log_likelihood)
    assert bounds.shape == (5, 10)
    np.testing.assert_allclose(bounds, _reference_bound(graphs, IMAGES, 42, k), rtol=1e-5)
    probabilities = array(response.label_probabilities)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert list(response.predicted_labels) == list(np.argmax(bounds, axis=1))
    np.testing.assert_array_equal(
        np.asarray(response.label_log_likelihood, dtype=np.float32), bounds[range(5), LABELS]
    )
    again = server.stub.Score(request, timeout=60)
    assert again.log_likelihood.data == response.log_likelihood.data
    other = server.stub.Score(
        pb.ScoreRequest(images=tensor(IMAGES), samples=samples, seed=43), timeout=60
    )
    assert other.log_likelihood.data != response.log_likelihood.data
    assert not other.label_log_likelihood  # no labels given


def test_score_without_a_seed_returns_the_one_it_drew(server: ServerProcess) -> None:
    drawn = server.stub.Score(pb.ScoreRequest(images=tensor(IMAGES[:2])), timeout=30)
    replay = server.stub.Score(
        pb.ScoreRequest(images=tensor(IMAGES[:2]), seed=drawn.seed), timeout=30
    )
    assert replay.log_likelihood.data == drawn.log_likelihood.data


def _bad_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((27, 28), dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


_ONE = tensor(IMAGES[:1])
_NAN = IMAGES[:2].copy()
_NAN[1, 3, 3] = np.nan
_OVER = IMAGES[:2].copy()
_OVER[1, 0, 0] = 1.5
_NEGATIVE_INF = IMAGES[:2].copy()
_NEGATIVE_INF[0, 27, 27] = -np.inf


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"labels": [1]}, "images: set images (a uint8 or float32 Tensor [N, H, W]) or png"),
        ({"images": _ONE, "png": pngs(np.zeros((1, 28, 28), np.uint8)), "labels": [1]},
         "png: set either images (a Tensor) or png, not both"),
        ({"images": pb.Tensor(shape=[1, 28, 28], dtype="float64", data=b"\0" * 6272),
          "labels": [1]}, "images.dtype: 'float64' must be 'uint8' or 'float32'"),
        ({"images": pb.Tensor(shape=[1, 28], dtype="uint8", data=b"\0" * 28), "labels": [1]},
         "images.shape: [1, 28] must be [N, 28, 28]"),
        ({"images": pb.Tensor(shape=[1, 28, 28], dtype="uint8", data=b"\0" * 783),
          "labels": [1]}, "images.data: 783 bytes, must be 784"),
        ({"images": tensor(_NAN), "labels": [1, 2]}, "images[1]: holds nan"),
        ({"images": tensor(_OVER), "labels": [1, 2]}, "images[1]: holds 1.5"),
        ({"images": tensor(_NEGATIVE_INF), "labels": [1, 2]}, "images[0]: holds -inf"),
        ({"png": [b"not a png"], "labels": [1]}, "png[0]: not a decodable PNG"),
        ({"png": [pngs(np.zeros((1, 28, 28), np.uint8))[0], _bad_png()], "labels": [1, 2]},
         "png[1]: 27 x 28 pixels (H x W), must be 28 x 28"),
        ({"images": tensor(np.zeros((1025, 28, 28), np.uint8)), "labels": [1] * 1025},
         "images.shape: 1025 images; at most 1024"),
        ({"images": tensor(IMAGES[:2]), "labels": [1]},
         "labels[1]: missing; one label per image (2 images, 1 labels)"),
        ({"images": _ONE, "labels": [1, 2]}, "labels[1]: extra; one label per image"),
        ({"images": _ONE, "labels": [10]}, "labels[0]: 10 is outside [0, 10)"),
        ({"images": _ONE, "labels": [1], "model_version": "9"}, "model_version: '9' is not loaded"),
    ],
)  # fmt: skip
def test_bad_inputs_name_the_field_and_index_in_every_rpc(
    server: ServerProcess, fields: dict[str, object], message: str
) -> None:
    calls = [
        (server.stub.Encode, pb.EncodeRequest(**fields)),  # type: ignore[arg-type]
        (server.stub.Reconstruct, pb.ReconstructRequest(**fields)),  # type: ignore[arg-type]
        (server.stub.Restyle, pb.RestyleRequest(target_labels=[0], **fields)),  # type: ignore[arg-type]
        (server.stub.Score, pb.ScoreRequest(**fields)),  # type: ignore[arg-type]
    ]
    for method, request in calls:
        with pytest.raises(grpc.RpcError) as raised:
            method(request, timeout=30)
        expected = "NOT_FOUND" if "model_version" in message else "INVALID_ARGUMENT"
        assert raised.value.code() == grpc.StatusCode[expected], method
        assert message in raised.value.details(), (method, raised.value.details())


@pytest.mark.parametrize(
    ("method", "request_message", "message"),
    [
        ("Restyle", pb.RestyleRequest(images=_ONE, labels=[1]),
         "target_labels: must hold at least one label"),
        ("Restyle", pb.RestyleRequest(images=_ONE, labels=[1], target_labels=[0, 11]),
         "target_labels[1]: 11 is outside [0, 10)"),
        ("Restyle", pb.RestyleRequest(images=tensor(np.zeros((103, 28, 28), np.uint8)),
                                      labels=[1] * 103, target_labels=range(10)),
         "target_labels: 103 images x 10 targets = 1030 images; at most 1024"),
        ("Score", pb.ScoreRequest(images=_ONE, samples=1025), "samples: 1025 must be in [0, 1024]"),
        ("Score", pb.ScoreRequest(images=tensor(IMAGES), samples=205),
         "samples: 5 images x 205 samples = 1025; at most 1024"),
        ("Reconstruct", pb.ReconstructRequest(images=_ONE, labels=[1], encoding=9),
         "encoding: 9 is not one of ENCODING_UNSPECIFIED=0"),
    ],
)  # fmt: skip
def test_method_fields_are_checked(
    server: ServerProcess, method: str, request_message: object, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        getattr(server.stub, method)(request_message, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(message), raised.value.details()


def test_a_version_without_an_encoder_is_failed_precondition_naming_it(
    server: ServerProcess,
) -> None:
    calls = [
        (server.stub.Encode, pb.EncodeRequest(images=_ONE, labels=[1], model_version="1")),
        (server.stub.Reconstruct, pb.ReconstructRequest(images=_ONE, labels=[1],
                                                        model_version="1")),
        (server.stub.Restyle, pb.RestyleRequest(images=_ONE, labels=[1], target_labels=[2],
                                                model_version="1")),
        (server.stub.Score, pb.ScoreRequest(images=_ONE, model_version="1")),
    ]  # fmt: skip
    for method, request in calls:
        with pytest.raises(grpc.RpcError) as raised:
            method(request, timeout=30)
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "cvae-mnist version 1 ships no encoder" in raised.value.details()


def test_each_method_is_counted_under_its_own_name(server: ServerProcess) -> None:
    def count(method: str, code: str) -> float:
        return server.metric(
            "cvae_requests_total", f'code="{code}",method="{method}",protocol="cvae.v1"'
        )

    before = {m: count(m, "OK") for m in ("Encode", "Reconstruct", "Restyle", "Score")}
    server.stub.Encode(pb.EncodeRequest(images=_ONE, labels=[1]), timeout=30)
    server.stub.Reconstruct(pb.ReconstructRequest(images=_ONE, labels=[1]), timeout=30)
    server.stub.Restyle(pb.RestyleRequest(images=_ONE, labels=[1], target_labels=[2]), timeout=30)
    server.stub.Score(pb.ScoreRequest(images=_ONE), timeout=30)
    for method, value in before.items():
        assert count(method, "OK") == value + 1, method
    refused = count("Score", "FAILED_PRECONDITION")
    with pytest.raises(grpc.RpcError):
        server.stub.Score(pb.ScoreRequest(images=_ONE, model_version="1"), timeout=30)
    assert count("Score", "FAILED_PRECONDITION") == refused + 1


def test_concurrent_generate_and_score_give_the_answers_they_give_alone(
    server: ServerProcess,
) -> None:
    score = pb.ScoreRequest(images=tensor(IMAGES), samples=3, seed=5)
    restyle = pb.RestyleRequest(images=tensor(IMAGES), labels=LABELS, target_labels=range(10))
    generate = pb.GenerateRequest(labels=[i % 10 for i in range(300)], seed=9)
    alone = [
        server.stub.Score(score, timeout=60).log_likelihood.data,
        server.stub.Restyle(restyle, timeout=60).images.data,
        server.stub.Generate(generate, timeout=60).images.data,
    ]
    for _ in range(3):
        futures = [
            server.stub.Generate.future(generate, timeout=60),
            server.stub.Score.future(score, timeout=60),
            server.stub.Restyle.future(restyle, timeout=60),
            server.stub.Score.future(score, timeout=60),
        ]
        answers = [future.result() for future in futures]
        assert answers[0].images.data == alone[2]
        assert answers[1].log_likelihood.data == alone[0]
        assert answers[2].images.data == alone[1]
        assert answers[3].log_likelihood.data == alone[0]


def test_a_score_bigger_than_the_queue_still_runs(repo: Path) -> None:
    # 8 images x 10 labels x 4 samples = 320 decoder rows through a queue of 32 images.
    with ServerProcess(
        repo, "--queue-size", "32", "--max-images-per-request", "32", "--max-batch", "16",
        "--stream-chunk-size", "32",
        metrics=False,
    ) as small:  # fmt: skip
        images = np.repeat(IMAGES, 2, axis=0)[:8]
        response = small.stub.Score(pb.ScoreRequest(images=tensor(images), samples=4), timeout=60)
        assert array(response.log_likelihood).shape == (8, 10)
        with pytest.raises(grpc.RpcError) as raised:
            small.stub.Score(pb.ScoreRequest(images=tensor(images), samples=5), timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_expired_deadline_is_deadline_exceeded(server: ServerProcess) -> None:
    images = tensor(np.zeros((1024, 28, 28), np.uint8))
    with pytest.raises(grpc.RpcError) as raised:
        server.stub.Score(pb.ScoreRequest(images=images), timeout=0.001)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
