"""The client library against a real `cvae serve` process: results, errors, retries, asyncio."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from cvae.cli import main
from cvae.client import (
    NO_RETRY,
    AsyncClient,
    Client,
    Encoding,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    RetryPolicy,
    TlsConfig,
    UnavailableError,
)
from tests.cvae.certs import make_certificates
from tests.service.modelrepo import write_version
from tests.service.serverproc import ServerProcess


def _port_is_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_generate_returns_numpy_images_labels_and_latents(server: str) -> None:
    with Client(server) as client:
        info = client.model_info()
        result = client.generate([0, 1, 2, 1], seed=7)
    assert result.images.dtype == np.uint8
    assert result.images.shape == (4, *info.image_shape)
    assert result.labels.tolist() == [0, 1, 2, 1]
    assert result.latents is not None and result.latents.shape == (4, info.latent_dim)
    assert result.seed == 7
    assert (result.model_name, result.model_version) == (info.name, info.version)


def test_same_seed_same_bytes_and_encodings_agree(server: str) -> None:
    with Client(server) as client:
        first = client.generate([3, 1, 4], seed=11)
        second = client.generate([3, 1, 4], seed=11)
        floats = client.generate([3, 1, 4], seed=11, encoding=Encoding.FLOAT32)
        pngs = client.generate([3, 1, 4], seed=11, encoding=Encoding.PNG)
        other = client.generate([3, 1, 4], seed=12)
    assert first.images.tobytes() == second.images.tobytes()
    assert not np.array_equal(first.images, other.images)
    assert floats.images.dtype == np.float32
    assert floats.images.min() >= 0.0 and floats.images.max() <= 1.0
    assert np.array_equal(np.round(floats.images * 255).astype(np.uint8), first.images)
    assert len(pngs.png) == 3 and np.array_equal(pngs.images, first.images)


def test_without_a_seed_the_returned_seed_replays_the_images(server: str) -> None:
    with Client(server) as client:
        drawn = client.generate([5, 5])
        assert drawn.seed is not None
        replay = client.generate([5, 5], seed=drawn.seed)
        from_latents = client.generate([5, 5], latents=drawn.latents)
    assert np.array_equal(replay.images, drawn.images)
    assert np.array_equal(from_latents.images, drawn.images)


def test_stream_chunks_concatenate_to_the_unary_result(server: str) -> None:
    labels = [i % 10 for i in range(250)]
    with Client(server) as client:
        whole = client.generate(labels, seed=3)
        parts = list(client.stream(labels, seed=3, chunk_size=64))
    assert [part.offset for part in parts] == [0, 64, 128, 192]
    assert np.array_equal(np.concatenate([part.images for part in parts]), whole.images)
    assert np.concatenate([part.labels for part in parts]).tolist() == labels


def test_bad_input_raises_a_typed_error_at_once(server: str) -> None:
    with Client(server) as client:
        num_classes = client.model_info().num_classes
        started = time.monotonic()
        with pytest.raises(InvalidArgumentError) as caught:
            client.generate([0, num_classes])
        assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "label" in caught.value.details
        with pytest.raises(InvalidArgumentError):
            list(client.stream([]))
    # not retried: the default policy would back off for seconds on a retryable code
    assert time.monotonic() - started < 5
    with Client(server, retry=RetryPolicy(retry_unloaded_version=False)) as client:
        started = time.monotonic()
        with pytest.raises(NotFoundError):
            client.generate([0], model_version="999")
        assert time.monotonic() - started < 5


def test_a_pinned_version_one_replica_lacks_is_found_on_another(
    model_repository: Path, tmp_path: Path
) -> None:
    """Mid-rollout: replica A serves version 1 only, replica B 1 and 2. A client pinning 2 over
    both (round_robin) gets NOT_FOUND from A; retrying sends the call to B."""
    newer = tmp_path / "newer"
    shutil.copytree(model_repository, newer)
    write_version(newer, "2")
    with ServerProcess(model_repository) as old, ServerProcess(newer) as new:
        target = f"ipv4:{old.address},{new.address}"
        strict = RetryPolicy(retry_unloaded_version=False)
        with Client(target, retry=strict) as client:
            outcomes = []
            for seed in range(8):
                try:
                    outcomes.append(client.generate([3], seed=seed, model_version="2"))
                except NotFoundError:
                    outcomes.append(None)
        assert None in outcomes, "the old replica is reached and refuses version 2"
        with Client(target) as client:  # the default policy
            results = [client.generate([3], seed=s, model_version="2") for s in range(8)]
            streamed = list(client.stream([3] * 40, seed=1, model_version="2", chunk_size=8))
        assert all(r.model_version == "2" for r in results)
        assert sum(len(part.labels) for part in streamed) == 40

        async def pinned() -> list[str]:
            # 8 calls at once share round_robin's turns, so one call may meet the old replica
            # several times in a row: give each more tries than the default 5
            patient = RetryPolicy(max_attempts=30, initial_backoff_s=0.02, max_backoff_s=0.2)
            async with AsyncClient(target, retry=patient) as client:
                calls = [client.generate([3], seed=s, model_version="2") for s in range(8)]
                return [r.model_version for r in await asyncio.gather(*calls)]

        assert asyncio.run(pinned()) == ["2"] * 8
        # A version no replica has still fails, after the bounded retries.
        with (
            Client(target, retry=RetryPolicy(max_attempts=3)) as client,
            pytest.raises(NotFoundError),
        ):
            client.generate([3], model_version="7")


def test_dns_target_with_round_robin_works(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    with Client(f"dns:///127.0.0.1:{port}") as client:
        assert client.generate([1], seed=1).images.shape[0] == 1


def test_client_retries_until_a_late_server_is_up(model_repository: Path) -> None:
    late = ServerProcess(model_repository)  # a port, no process yet
    assert not _port_is_open(late.port)
    with (
        Client(late.address, retry=NO_RETRY, timeout_s=5) as client,
        pytest.raises(UnavailableError),
    ):
        client.generate([0], seed=0)
    starter = threading.Timer(1.0, lambda: late.start(wait=False))
    starter.start()
    try:
        retry = RetryPolicy(max_attempts=100, initial_backoff_s=0.2, max_backoff_s=1.0)
        with Client(late.address, retry=retry, timeout_s=90) as client:
            result = client.generate([2], seed=5)  # called while nothing listens yet
        assert late.process is not None, "the call returned before the server was started"
        assert result.labels.tolist() == [2]
    finally:
        starter.cancel()
        starter.join()
        late.__exit__(None, None, None)


def test_async_client_has_the_same_api(server: str) -> None:
    async def scenario() -> tuple[np.ndarray, np.ndarray, list[int], int]:
        async with AsyncClient(server) as client:
            info = await client.model_info()
            single = await client.generate([4, 2], seed=9)
            parts = [part async for part in client.stream([4, 2] * 50, seed=9, chunk_size=30)]
            with pytest.raises(InvalidArgumentError):
                await client.generate([info.num_classes])
            together = await asyncio.gather(*(client.generate([4, 2], seed=9) for _ in range(4)))
        assert all(np.array_equal(r.images, single.images) for r in together)
        streamed = np.concatenate([part.images for part in parts])
        return single.images, streamed, [part.offset for part in parts], info.latent_dim

    single, streamed, offsets, _ = asyncio.run(scenario())
    with Client(server) as client:
        assert np.array_equal(client.generate([4, 2], seed=9).images, single)
        assert np.array_equal(client.generate([4, 2] * 50, seed=9).images, streamed)
    assert offsets == [0, 30, 60, 90]


def test_a_full_queue_is_retried_with_backoff(model_repository: Path) -> None:
    # room for one 64-image request; each is decoded one image per call, so it stays queued
    # a while, and a burst of them overflows the queue
    one_at_a_time = (
        *("--queue-size", "64", "--max-images-per-request", "64", "--stream-chunk-size", "64"),
        *("--max-batch", "1"),
    )

    async def burst(target: str, retry: RetryPolicy) -> list[BaseException | None]:
        async with AsyncClient(target, retry=retry, timeout_s=60) as client:
            calls = [client.generate([1] * 64, seed=s) for s in range(16)]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
        return [o if isinstance(o, BaseException) else None for o in outcomes]

    with ServerProcess(model_repository, *one_at_a_time) as running:
        target = running.address
        refused = asyncio.run(burst(target, NO_RETRY))
        assert any(isinstance(o, ResourceExhaustedError) for o in refused), refused
        patient = RetryPolicy(max_attempts=100, initial_backoff_s=0.05, max_backoff_s=0.5)
        assert asyncio.run(burst(target, patient)) == [None] * 16


def test_mutual_tls(model_repository: Path, tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    tls = TlsConfig.from_files(files.ca, files.client_cert, files.client_key)
    tls_flags = (
        *("--tls-cert", str(files.server_cert), "--tls-key", str(files.server_key)),
        *("--tls-client-ca", str(files.ca)),
    )
    with ServerProcess(model_repository, *tls_flags, credentials=tls.credentials()) as running:
        with Client(running.address, tls=tls) as client:
            assert client.generate([7], seed=1).labels.tolist() == [7]
        tls_args = ["--tls-ca", str(files.ca), "--tls-cert", str(files.client_cert)]
        tls_args += ["--tls-key", str(files.client_key)]
        out = tmp_path / "tls.npz"
        command = ["generate", "--server", running.address, "--per-label", "2", "--out", str(out)]
        assert main([*command, *tls_args, "--no-progress"]) == 0
        assert out.is_file()
        for refused in (TlsConfig.from_files(files.ca), None):  # no client cert; plaintext
            _assert_unavailable(running.address, refused)


def _assert_unavailable(target: str, tls: TlsConfig | None) -> None:
    client = Client(target, tls=tls, retry=NO_RETRY, timeout_s=10)
    try:
        with pytest.raises(UnavailableError):
            client.generate([7], seed=1)
    finally:
        client.close()
