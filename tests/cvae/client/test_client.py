"""Both clients (sync and asyncio, one parametrized suite) against a real `cvae serve` process:
results, errors, retries, stream resume, TLS."""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from cvae.cli import main
from cvae.client import (
    NO_RETRY,
    Client,
    DeadlineExceededError,
    Encoding,
    GenerateResult,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    RetryPolicy,
    TlsConfig,
    UnavailableError,
)
from tests.cvae.certs import make_certificates
from tests.cvae.client.drivers import open_client
from tests.service.modelrepo import write_version
from tests.service.serverproc import ServerProcess


def _port_is_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_generate_returns_numpy_images_labels_and_latents(kind: str, server: str) -> None:
    with open_client(kind, server) as client:
        info = client.model_info()
        result = client.generate([0, 1, 2, 1], seed=7)
    assert result.images.dtype == np.uint8
    assert result.images.shape == (4, *info.image_shape)
    assert result.labels.tolist() == [0, 1, 2, 1]
    assert result.latents is not None and result.latents.shape == (4, info.latent_dim)
    assert result.seed == 7
    assert (result.model_name, result.model_version) == (info.name, info.version)


def test_same_seed_same_bytes_and_encodings_agree(kind: str, server: str) -> None:
    with open_client(kind, server) as client:
        first = client.generate([3, 1, 4], seed=11)
        second = client.generate([3, 1, 4], seed=11)
        floats = client.generate([3, 1, 4], seed=11, encoding=Encoding.FLOAT32)
        pngs = client.generate([3, 1, 4], seed=11, encoding=Encoding.PNG)
        other = client.generate([3, 1, 4], seed=12)
        together = client.together("generate", [{"labels": [3, 1, 4], "seed": 11}] * 4)
    assert first.images.tobytes() == second.images.tobytes()
    assert all(np.array_equal(r.images, first.images) for r in together)
    assert not np.array_equal(first.images, other.images)
    assert floats.images.dtype == np.float32
    assert floats.images.min() >= 0.0 and floats.images.max() <= 1.0
    assert np.array_equal(np.round(floats.images * 255).astype(np.uint8), first.images)
    assert len(pngs.png) == 3 and np.array_equal(pngs.images, first.images)
    with Client(server) as reference:  # both clients give the same bytes
        assert np.array_equal(reference.generate([3, 1, 4], seed=11).images, first.images)


def test_without_a_seed_the_returned_seed_replays_the_images(kind: str, server: str) -> None:
    with open_client(kind, server) as client:
        drawn = client.generate([5, 5])
        assert drawn.seed is not None
        replay = client.generate([5, 5], seed=drawn.seed)
        from_latents = client.generate([5, 5], latents=drawn.latents)
    assert np.array_equal(replay.images, drawn.images)
    assert np.array_equal(from_latents.images, drawn.images)


def test_stream_chunks_concatenate_to_the_unary_result(kind: str, server: str) -> None:
    labels = [i % 10 for i in range(250)]
    with open_client(kind, server) as client:
        whole = client.generate(labels, seed=3)
        parts = client.stream(labels, seed=3, chunk_size=64)
    assert [part.offset for part in parts] == [0, 64, 128, 192]
    assert np.array_equal(np.concatenate([part.images for part in parts]), whole.images)
    assert np.concatenate([part.labels for part in parts]).tolist() == labels


def test_bad_input_raises_a_typed_error_at_once(kind: str, server: str) -> None:
    with open_client(kind, server) as client:
        num_classes = client.model_info().num_classes
        started = time.monotonic()
        with pytest.raises(InvalidArgumentError) as caught:
            client.generate([0, num_classes])
        assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "label" in caught.value.details
        with pytest.raises(InvalidArgumentError):
            client.stream([])
    # not retried: the default policy would back off for seconds on a retryable code
    assert time.monotonic() - started < 5
    with open_client(kind, server, retry=RetryPolicy(retry_unloaded_version=False)) as client:
        started = time.monotonic()
        with pytest.raises(NotFoundError):
            client.generate([0], model_version="999")
        assert time.monotonic() - started < 5


def test_a_spent_deadline_fails_without_a_call(kind: str, server: str) -> None:
    with open_client(kind, server, timeout_s=0) as client:
        with pytest.raises(DeadlineExceededError):
            client.generate([1], seed=1)
        with pytest.raises(DeadlineExceededError):
            client.stream([1], seed=1)


@pytest.fixture(scope="module")
def rollout(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Mid-rollout: replica A serves version 1 only, replica B 1 and 2; yields a round_robin
    target over both."""
    newer = tmp_path_factory.mktemp("rollout") / "newer"
    shutil.copytree(model_repository, newer)
    write_version(newer, "2")
    with ServerProcess(model_repository) as old, ServerProcess(newer) as new:
        yield f"ipv4:{old.address},{new.address}"


def test_a_pinned_version_one_replica_lacks_is_found_on_another(kind: str, rollout: str) -> None:
    """A client pinning 2 over both replicas gets NOT_FOUND from A; retrying sends the call
    to B."""
    strict = RetryPolicy(retry_unloaded_version=False)
    with open_client(kind, rollout, retry=strict) as client:
        outcomes = []
        # round_robin uses the replicas whose connection is ready: on a loaded machine the first
        # calls may all go to one of them, so call until the old one has been met (or 40 calls)
        for seed in range(40):
            try:
                outcomes.append(client.generate([3], seed=seed, model_version="2"))
            except NotFoundError:
                outcomes.append(None)
                break
            time.sleep(0.05)
    assert None in outcomes, "the old replica is reached and refuses version 2"
    with open_client(kind, rollout) as client:  # the default policy
        results = [client.generate([3], seed=s, model_version="2") for s in range(8)]
        streamed = client.stream([3] * 40, seed=1, model_version="2", chunk_size=8)
    assert all(r.model_version == "2" for r in results)
    assert sum(len(part.labels) for part in streamed) == 40
    # 8 calls at once share round_robin's turns, so one call may meet the old replica several
    # times in a row: give each more tries than the default 5
    patient = RetryPolicy(max_attempts=30, initial_backoff_s=0.02, max_backoff_s=0.2)
    with open_client(kind, rollout, retry=patient) as client:
        calls = [{"labels": [3], "seed": s, "model_version": "2"} for s in range(8)]
        assert [r.model_version for r in client.together("generate", calls)] == ["2"] * 8
    # A version no replica has still fails, after the bounded retries.
    with (
        open_client(kind, rollout, retry=RetryPolicy(max_attempts=3)) as client,
        pytest.raises(NotFoundError),
    ):
        client.generate([3], model_version="7")


def test_dns_target_with_round_robin_works(kind: str, server: str) -> None:
    port = server.rsplit(":", 1)[1]
    with open_client(kind, f"dns:///127.0.0.1:{port}") as client:
        assert client.generate([1], seed=1).images.shape[0] == 1


def test_client_retries_until_a_late_server_is_up(kind: str, model_repository: Path) -> None:
    late = ServerProcess(model_repository)  # a port, no process yet
    assert not _port_is_open(late.port)
    with (
        open_client(kind, late.address, retry=NO_RETRY, timeout_s=5) as client,
        pytest.raises(UnavailableError),
    ):
        client.generate([0], seed=0)
    starter = threading.Timer(1.0, lambda: late.start(wait=False))
    starter.start()
    try:
        retry = RetryPolicy(max_attempts=100, initial_backoff_s=0.2, max_backoff_s=1.0)
        with open_client(kind, late.address, retry=retry, timeout_s=90) as client:
            result = client.generate([2], seed=5)  # called while nothing listens yet
        assert late.process is not None, "the call returned before the server was started"
        assert result.labels.tolist() == [2]
    finally:
        starter.cancel()
        starter.join()
        late.__exit__(None, None, None)


def test_a_stream_cut_by_a_dead_server_resumes_without_loss_or_repeats(
    kind: str, model_repository: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server is killed after the first part and a new one starts on its port: the stream
    resumes with the seed the server drew, so the parts are exactly the unary result."""
    labels = [i % 10 for i in range(1000)]  # the most one Generate takes: 1024
    first = ServerProcess(model_repository, "--max-batch", "1")
    second = ServerProcess(model_repository, "--max-batch", "1")
    second.port = first.port

    def kill_and_replace(part: GenerateResult) -> None:
        if part.offset == 0:
            first.signal(signal.SIGKILL)
            first.wait()
            second.start()

    retry = RetryPolicy(max_attempts=50, initial_backoff_s=0.1, max_backoff_s=0.5)
    try:
        first.start()
        with open_client(kind, first.address, retry=retry, timeout_s=120) as client:
            with caplog.at_level(logging.WARNING, logger="cvae.client.stream_resume"):
                parts = client.stream(labels, chunk_size=8, on_part=kill_and_replace)
            assert any("resuming" in r.getMessage() for r in caplog.records), "not cut"
            seed = parts[0].seed
            whole = client.generate(labels, seed=seed)
    finally:
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)
    assert seed is not None and all(part.seed == seed for part in parts)
    assert [part.offset for part in parts] == list(range(0, len(labels), 8))
    assert np.array_equal(np.concatenate([part.images for part in parts]), whole.images)
    assert np.concatenate([part.labels for part in parts]).tolist() == labels


def test_a_full_queue_is_retried_with_backoff(kind: str, model_repository: Path) -> None:
    # room for one 64-image request; each is decoded one image per call, so it stays queued
    # a while, and a burst of them overflows the queue
    one_at_a_time = (
        *("--queue-size", "64", "--max-images-per-request", "64", "--stream-chunk-size", "64"),
        *("--max-batch", "1"),
    )
    calls = [{"labels": [1] * 64, "seed": s} for s in range(16)]
    with ServerProcess(model_repository, *one_at_a_time) as running:
        with open_client(kind, running.address, retry=NO_RETRY, timeout_s=60) as client:
            refused = client.together("generate", calls)
        assert any(isinstance(o, ResourceExhaustedError) for o in refused), refused
        patient = RetryPolicy(max_attempts=100, initial_backoff_s=0.05, max_backoff_s=0.5)
        with open_client(kind, running.address, retry=patient, timeout_s=60) as client:
            outcomes = client.together("generate", calls)
        assert [o for o in outcomes if isinstance(o, BaseException)] == []


def test_mutual_tls(kind: str, model_repository: Path, tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    tls = TlsConfig.from_files(files.ca, files.client_cert, files.client_key)
    tls_flags = (
        *("--tls-cert", str(files.server_cert), "--tls-key", str(files.server_key)),
        *("--tls-client-ca", str(files.ca)),
    )
    with ServerProcess(model_repository, *tls_flags, credentials=tls.credentials()) as running:
        with open_client(kind, running.address, tls=tls) as client:
            assert client.generate([7], seed=1).labels.tolist() == [7]
        for refused in (TlsConfig.from_files(files.ca), None):  # no client cert; plaintext
            with (
                open_client(
                    kind, running.address, tls=refused, retry=NO_RETRY, timeout_s=10
                ) as client,
                pytest.raises(UnavailableError),
            ):
                client.generate([7], seed=1)
        if kind == "sync":  # the command line (a sync client) takes the same files
            tls_args = ["--tls-ca", str(files.ca), "--tls-cert", str(files.client_cert)]
            tls_args += ["--tls-key", str(files.client_key)]
            out = tmp_path / "tls.npz"
            command = ["generate", "--server", running.address, "--per-label", "2"]
            assert main([*command, "--out", str(out), *tls_args, "--no-progress"]) == 0
            assert out.is_file()
