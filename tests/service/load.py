"""A background load for tests: threads sending seeded Generate calls until stopped."""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc

from cvae.v1 import generator_pb2 as pb
from tests.service.serverproc import ServerProcess


class GenerateLoad:
    """Threads sending seeded Generate calls; keeps (seed, labels, version, images) and errors.

    `labels_for(seed)` chooses each call's labels; thread i uses seeds i·10⁶ + 1, + 2, ...
    """

    def __init__(
        self,
        server: ServerProcess,
        labels_for: Callable[[int], list[int]],
        threads: int = 4,
    ) -> None:
        self._server = server
        self._labels_for = labels_for
        self._stop = threading.Event()
        self.answers: list[tuple[int, list[int], str, bytes]] = []
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, index: int) -> None:
        stub = self._server.stub
        seed = index * 1_000_000
        while not self._stop.is_set():
            seed += 1
            labels = self._labels_for(seed)
            request = pb.GenerateRequest(labels=labels, seed=seed, omit_latents=True)
            try:
                response = stub.Generate(request, timeout=30)
                self.answers.append((seed, labels, response.model_version, response.images.data))
            except grpc.RpcError as error:
                self.errors.append(f"{error.code()}: {error.details()}")

    def count(self) -> int:
        return len(self.answers)

    def __enter__(self) -> GenerateLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
