"""One face for both clients, so one test suite proves `Client` and `AsyncClient` alike.

`open_client(kind, target, **options)` gives a driver whose methods are the client's, called
synchronously: the asyncio driver runs each coroutine on its own event loop. `stream` returns
the list of parts; `together` runs calls at once (threads for the sync client, gather for the
asyncio one) and returns each result or the exception it raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from cvae.client import AsyncClient, Client, GenerateResult

KINDS = ("sync", "asyncio")
OnPart = Callable[[GenerateResult], None]


class _SyncDriver:
    def __init__(self, target: str, **options: Any) -> None:
        self.client = Client(target, **options)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        return getattr(self.client, method)  # type: ignore[no-any-return]

    def stream(self, *args: Any, on_part: OnPart | None = None, **kwargs: Any) -> list[Any]:
        parts = []
        for part in self.client.stream(*args, **kwargs):
            parts.append(part)
            if on_part is not None:
                on_part(part)
        return parts

    def together(self, method: str, calls: list[dict[str, Any]]) -> list[Any]:
        def one(kwargs: dict[str, Any]) -> Any:
            try:
                return getattr(self.client, method)(**kwargs)
            except Exception as error:
                return error

        with ThreadPoolExecutor(len(calls)) as pool:
            return list(pool.map(one, calls))

    def close(self) -> None:
        self.client.close()


class _AsyncDriver:
    def __init__(self, target: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()

        async def create() -> AsyncClient:
            return AsyncClient(target, **options)

        self.client = self._loop.run_until_complete(create())

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(getattr(self.client, method)(*args, **kwargs))

        return call

    def stream(self, *args: Any, on_part: OnPart | None = None, **kwargs: Any) -> list[Any]:
        async def collect() -> list[Any]:
            parts = []
            async for part in self.client.stream(*args, **kwargs):
                parts.append(part)
                if on_part is not None:
                    on_part(part)
            return parts

        return self._loop.run_until_complete(collect())

    def together(self, method: str, calls: list[dict[str, Any]]) -> list[Any]:
        async def gather() -> list[Any]:
            coroutines = [getattr(self.client, method)(**kwargs) for kwargs in calls]
            return await asyncio.gather(*coroutines, return_exceptions=True)

        return self._loop.run_until_complete(gather())

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self.client.close())
        finally:
            self._loop.close()


Driver = _SyncDriver | _AsyncDriver


@contextmanager
def open_client(kind: str, target: str, **options: Any) -> Iterator[Any]:
    """A `Client` (kind "sync") or `AsyncClient` ("asyncio") driver, closed on exit."""
    driver: Driver = (_SyncDriver if kind == "sync" else _AsyncDriver)(target, **options)
    try:
        yield driver
    finally:
        driver.close()
