"""A gRPC load generator in its own process (grpc.aio, many calls in flight), for the soak.

    python -m tests.soak.loadgen TARGET --mode closed --concurrency 8 --duration 10 --images 64
    python -m tests.soak.loadgen TARGET --mode open --rate 400 --duration 30 --images 64

closed: `concurrency` callers, each sending its next call when the last one is answered (this
measures capacity). open: calls start at a fixed rate whatever happens to earlier ones (this
overloads). Every call is a Generate of `images` images with a deadline; the summary (JSON on
stdout) has counts by status code, latency percentiles by outcome, and the accepted rate.

Requests go out as serialized bytes and answers stay bytes (no protobuf parsing of the ~200 kB
images): the generator shares the server's cores, so each call it makes should cost it little.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import time
from collections import Counter
from typing import Any

import grpc
import numpy as np

from bench.frames import GENERATE_PATH
from cvae.v1 import generator_pb2 as pb

_MAX_IN_FLIGHT = 4000  # open mode: beyond this the generator itself would be the bottleneck
# Connections the calls are spread over: the server takes at most 1,024 calls on one connection
# (--max-streams-per-connection); beyond that the calls would wait in this client's own queue.
_CONNECTIONS = 4


class _Results:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {}
        self.codes: Counter[str] = Counter()
        self.ok_in_window = 0
        self.skipped = 0  # open mode: arrivals not sent because _MAX_IN_FLIGHT calls were open

    def add(self, code: str, seconds: float, in_window: bool) -> None:
        self.codes[code] += 1
        self.latencies.setdefault(code, []).append(seconds)
        self.ok_in_window += code == "OK" and in_window


async def _call(generate: Any, request: bytes, deadline: float) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        await generate(request, timeout=deadline)
        code = "OK"
    except grpc.aio.AioRpcError as error:
        code = error.code().name
    return code, time.perf_counter() - started


async def _closed(generate: Any, args: argparse.Namespace, results: _Results) -> float:
    end = time.perf_counter() + args.duration

    async def caller(index: int) -> None:
        seed = index * 10_000_000
        while time.perf_counter() < end:
            seed += 1
            request = _request(args.images, seed)
            code, seconds = await _call(generate, request, args.deadline)
            results.add(code, seconds, time.perf_counter() <= end)

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(args.concurrency)))
    return time.perf_counter() - started


async def _open(generate: Any, args: argparse.Namespace, results: _Results) -> float:
    interval = 1.0 / args.rate
    started = time.perf_counter()
    end = started + args.duration
    pending: set[asyncio.Task[None]] = set()

    async def one(seed: int) -> None:
        code, seconds = await _call(generate, _request(args.images, seed), args.deadline)
        results.add(code, seconds, time.perf_counter() <= end)

    sent = 0
    while True:
        due = started + sent * interval
        if due >= end:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent += 1
        if len(pending) >= _MAX_IN_FLIGHT:
            results.skipped += 1
            continue
        task = asyncio.ensure_future(one(sent))
        pending.add(task)
        task.add_done_callback(pending.discard)
    send_seconds = time.perf_counter() - started
    await asyncio.gather(*pending)
    return send_seconds


def _request(images: int, seed: int) -> bytes:
    labels = [(seed + i) % 10 for i in range(images)]
    return pb.GenerateRequest(labels=labels, seed=seed, omit_latents=True).SerializeToString()


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ms = np.array(values) * 1000.0
    return {f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 90, 99)} | {
        "max_ms": float(ms.max())
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    options = [
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.use_local_subchannel_pool", 1),  # a connection of its own for each channel
    ]
    async with contextlib.AsyncExitStack() as stack:
        channels = []
        for _ in range(_CONNECTIONS):
            channel = grpc.aio.insecure_channel(args.target, options=options)
            channels.append(await stack.enter_async_context(channel))
            await asyncio.wait_for(channel.channel_ready(), 30)
        methods = itertools.cycle([c.unary_unary(GENERATE_PATH) for c in channels])

        def generate(request: bytes, **kwargs: Any) -> Any:  # bytes in, bytes out
            return next(methods)(request, **kwargs)

        results = _Results()
        mode = _closed if args.mode == "closed" else _open
        window = await mode(generate, args, results)
    return {
        "mode": args.mode,
        "concurrency": args.concurrency,
        "offered_rate": args.rate if args.mode == "open" else None,
        "images_per_call": args.images,
        "deadline_s": args.deadline,
        "duration_s": args.duration,
        "window_s": window,
        "calls": sum(results.codes.values()),
        "sent_rate": sum(results.codes.values()) / window,
        "skipped": results.skipped,
        "codes": dict(results.codes),
        "accepted_rate": results.ok_in_window / args.duration,
        "latency": {code: _percentiles(v) for code, v in results.latencies.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target")
    parser.add_argument("--mode", choices=("closed", "open"), required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=100.0, help="calls/s (open mode)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--deadline", type=float, default=2.0)
    args = parser.parse_args(argv)
    summary = asyncio.run(run(args))
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
