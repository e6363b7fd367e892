"""The client's Encode/Reconstruct/Restyle/Score methods, sync and asyncio, against a real
server on a real encoder graph."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cvae.client import Client, FailedPreconditionError, InvalidArgumentError
from service.codec import to_png
from tests.cvae.client.drivers import open_client
from tests.cvae.real_images import IMAGES, LABELS

pytestmark = pytest.mark.timeout(300)


def test_client_methods_return_typed_results(kind: str, encoder_server: str) -> None:
    with open_client(kind, encoder_server) as client:
        assert client.model_info().has_encoder and not client.model_info("1").has_encoder
        encoded = client.encode(IMAGES[:3], LABELS[:3])
        assert encoded.mean.shape == encoded.log_variance.shape == (3, 16)
        assert encoded.model_version == "2" and encoded.labels.tolist() == [0, 1, 2]
        by_png = client.encode(to_png(IMAGES[:3]), LABELS[:3])
        assert np.array_equal(by_png.mean, encoded.mean)
        as_float = client.encode(IMAGES[:3].astype(np.float64) / 255, LABELS[:3])
        np.testing.assert_allclose(as_float.mean, encoded.mean, atol=1e-5)
        rebuilt = client.reconstruct(IMAGES[:3], LABELS[:3])
        assert rebuilt.images.shape == (3, 28, 28) and rebuilt.images.dtype == np.uint8
        assert np.array_equal(rebuilt.latents, encoded.mean)
        restyled = client.restyle(IMAGES[:2], LABELS[:2], [5, 6, 7])
        assert restyled.images.shape == (6, 28, 28)
        assert restyled.labels.tolist() == [5, 6, 7, 5, 6, 7]
        scores = client.score(IMAGES, LABELS, samples=2, seed=9)
        assert scores.log_likelihood.shape == scores.label_probabilities.shape == (10, 10)
        assert scores.predicted_labels.dtype == np.int64 and (scores.seed, scores.samples) == (9, 2)
        assert scores.label_log_likelihood is not None
        assert np.array_equal(scores.label_log_likelihood, scores.log_likelihood[range(10), LABELS])
        assert client.score(IMAGES).label_log_likelihood is None


def test_client_errors_are_typed(kind: str, encoder_server: str) -> None:
    with open_client(kind, encoder_server) as client:
        with pytest.raises(FailedPreconditionError, match="version 1 ships no encoder"):
            client.score(IMAGES[:1], model_version="1")
        with pytest.raises(InvalidArgumentError, match=r"labels\[1\]: missing"):
            client.encode(IMAGES[:2], [1])


def _answers(client: Any) -> tuple[np.ndarray, ...]:
    return (
        client.encode(IMAGES[:2], LABELS[:2]).mean,
        client.reconstruct(IMAGES[:2], LABELS[:2]).images,
        client.restyle(IMAGES[:2], LABELS[:2], [1, 2]).images,
        client.score(IMAGES[:2], seed=4).log_likelihood,
    )


def test_both_clients_give_the_same_answers(encoder_server: str) -> None:
    with Client(encoder_server) as sync, open_client("asyncio", encoder_server) as asyncio:
        for got, want in zip(_answers(asyncio), _answers(sync), strict=True):
            assert np.array_equal(got, want)
