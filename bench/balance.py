"""How fast traffic reaches a new replica after a scale-up (`python -m bench.balance`).

Two `cvae serve` processes stand in for two pods: one on 127.0.0.1, one on 127.0.0.2, on the same
port. Several client processes (each a pod of a calling service, each with its own connection)
send one-image Generate calls in a loop through one of the two ways docs/deploy.md describes:

- `clusterip`: a kube-proxy stand-in, a TCP proxy that picks a backend per *connection*, round
  robin, as kube-proxy does for a ClusterIP Service;
- `headless`: `cvae.client.Client` on `dns://<dns>/cvae.balance:<port>` with round_robin, where
  <dns> is a small DNS server answering with the ready replicas, as the cluster DNS answers for a
  headless Service.

The second replica is started and, once SERVING, added to the proxy's backends and to the DNS
answer (the moment Kubernetes adds a ready pod to the endpoints). Each replica's
cvae_requests_total is read every second; the result is the share of calls the new replica serves
over time, and how long it took to reach 40% (a fair share is 50%), for each
`--max-connection-age-s` tried. Writes docs/balance.md and docs/images/balance.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.message
import dns.rdatatype
import dns.rrset

from bench.grpccheck import cvae_counts, scrape
from bench.servers import ServerProcess, free_port, running

_ROOT = Path(__file__).resolve().parent.parent
_LOGGER = logging.getLogger(__name__)
NAME = "cvae.balance"
FAIR_SHARE_REACHED = 0.4
_OLD, _NEW = "127.0.0.1", "127.0.0.2"


class Endpoints:
    """The ready replicas' addresses, read by the DNS server and the proxy on every query and
    connection; `add` is a scale-up."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self._addresses = list(addresses)
        self._next = 0
        self._lock = threading.Lock()

    def add(self, address: str) -> None:
        with self._lock:
            self._addresses.append(address)

    def all(self) -> list[str]:
        with self._lock:
            return list(self._addresses)

    def pick(self) -> str:
        with self._lock:
            address = self._addresses[self._next % len(self._addresses)]
            self._next += 1
            return address


class _DnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self.queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        for question in query.question:
            if question.rdtype == dns.rdatatype.A:
                self.queries += 1
                answer = dns.rrset.from_text_list(question.name, 0, "IN", "A", self.endpoints.all())
                response.answer.append(answer)
        self.transport.sendto(response.to_wire(), addr)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError):
        writer.close()


@dataclass
class Network:
    """The cluster's side, on a background event loop: a DNS server and a per-connection proxy,
    both over the same endpoints."""

    endpoints: Endpoints
    port: int
    dns_port: int = 0
    proxy_port: int = 0
    connections: dict[str, int] = field(default_factory=dict)

    @contextlib.contextmanager
    def running(self) -> Iterator[Network]:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def start() -> None:
            dns_transport, self._dns = await loop.create_datagram_endpoint(
                lambda: _DnsProtocol(self.endpoints), local_addr=("127.0.0.1", 0)
            )
            self.dns_port = dns_transport.get_extra_info("sockname")[1]
            proxy = await asyncio.start_server(self._proxy, "127.0.0.1", 0)
            self.proxy_port = proxy.sockets[0].getsockname()[1]
            ready.set()

        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(start(), loop)
        ready.wait(10)
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend = self.endpoints.pick()
        self.connections[backend] = self.connections.get(backend, 0) + 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(backend, self.port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    def target(self, mode: str) -> str:
        if mode == "clusterip":
            return f"127.0.0.1:{self.proxy_port}"
        return f"dns://127.0.0.1:{self.dns_port}/{NAME}:{self.port}"


def _caller(target: str, stop_at: float, connected: Any) -> None:
    """One client pod: its own process, so its own connection (channels of one process with the
    same target share one). Counts itself in `connected` after its first answered call."""
    from cvae.client import Client

    first = True
    with Client(target, timeout_s=10) as client:
        while time.time() < stop_at:
            with contextlib.suppress(Exception):
                client.generate([7], seed=1)
                if first:
                    with connected.get_lock():
                        connected.value += 1
                    first = False


_GENERATE_COUNTS = cvae_counts("Generate")


def _calls_served(metrics_url: str) -> float:
    return _GENERATE_COUNTS(scrape(metrics_url, timeout_s=2)).ok


def _replica(host: str, port: int, metrics_port: int, age_s: float, log: Path) -> ServerProcess:
    args = [
        sys.executable, "-m", "cvae", "serve",
        "--model-repository", str(_ROOT / "models"), "--model-name", "cvae-mnist",
        "--host", host, "--port", str(port), "--metrics-port", str(metrics_port),
        "--max-connection-age-s", str(age_s), "--reload-interval-s", "0",
    ]  # fmt: skip
    return ServerProcess(f"replica {host}", args, log)


def _http_ready(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        return bool(response.status == 200)


@dataclass
class Run:
    mode: str
    max_connection_age_s: float
    callers: int
    seconds_after_ready: list[float] = field(default_factory=list)
    new_share: list[float] = field(default_factory=list)
    """Per second: the new replica's share of the calls served in that second."""
    seconds_to_fair_share: float | None = None
    dns_queries: int = 0


def measure(mode: str, age_s: float, callers: int, observe_s: float, logs: Path) -> Run:
    port = free_port()
    metrics = {_OLD: free_port(), _NEW: free_port()}
    urls = {host: f"http://{host}:{m}/metrics" for host, m in metrics.items()}
    run = Run(mode, age_s, callers)
    network = Network(Endpoints([_OLD]), port)
    old = _replica(_OLD, port, metrics[_OLD], age_s, logs / f"{mode}-{age_s:g}-old.log")
    new = _replica(_NEW, port, metrics[_NEW], age_s, logs / f"{mode}-{age_s:g}-new.log")
    with (
        network.running(),
        running(old, lambda: _http_ready(urls[_OLD]), 120),
    ):
        stop_at = time.time() + 120 + observe_s + 30
        context = multiprocessing.get_context("spawn")
        connected = context.Value("i", 0)
        pods = [
            context.Process(target=_caller, args=(network.target(mode), stop_at, connected))
            for _ in range(callers)
        ]
        for pod in pods:
            pod.start()
        try:
            # Every client pod holds its connection to the old replica before the scale-up.
            deadline = time.monotonic() + 120
            while connected.value < callers and time.monotonic() < deadline:
                time.sleep(0.2)
            if connected.value < callers:
                raise RuntimeError(f"{connected.value} of {callers} client pods got an answer")
            time.sleep(2.0)
            with running(new, lambda: _http_ready(urls[_NEW]), 120):
                network.endpoints.add(_NEW)  # the new pod is ready: into the endpoints
                ready_at = time.monotonic()
                last = {host: _calls_served(url) for host, url in urls.items()}
                while (elapsed := time.monotonic() - ready_at) < observe_s:
                    time.sleep(1.0)
                    now = {host: _calls_served(url) for host, url in urls.items()}
                    step = {host: now[host] - last[host] for host in now}
                    last = now
                    served = sum(step.values())
                    share = step[_NEW] / served if served else 0.0
                    run.seconds_after_ready.append(round(time.monotonic() - ready_at, 2))
                    run.new_share.append(round(share, 3))
                    if run.seconds_to_fair_share is None and share >= FAIR_SHARE_REACHED:
                        run.seconds_to_fair_share = round(elapsed + 1.0, 1)
                    _LOGGER.info("%s age %g s: t=%.0f s new replica %.0f%%, %d DNS queries",
                                 mode, age_s, elapsed, 100 * share,
                                 network._dns.queries)  # fmt: skip
        finally:
            for pod in pods:
                pod.terminate()
            for pod in pods:
                pod.join(10)
    run.dns_queries = network._dns.queries if mode == "headless" else 0
    return run


def report(runs: list[Run], docs: Path, command: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = docs / "images"
    images.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for axis, mode in zip(axes, ("clusterip", "headless"), strict=True):
        for run in (r for r in runs if r.mode == mode):
            off = not run.max_connection_age_s
            label = "age off" if off else f"age {run.max_connection_age_s:g} s"
            axis.plot(run.seconds_after_ready, [100 * s for s in run.new_share], label=label,
                      linestyle="--" if off else "-", zorder=3 if off else 2)  # fmt: skip
        axis.axhline(50, color="grey", linestyle=":", linewidth=1)
        axis.set_title({"clusterip": "ClusterIP (per-connection proxy)",
                        "headless": "headless + round_robin client"}[mode])  # fmt: skip
        axis.set_xlabel("seconds after the new replica is ready")
        axis.legend()
    axes[0].set_ylabel("new replica's share of calls (%)")
    figure.tight_layout()
    picture = images / "balance.png"
    figure.savefig(picture, dpi=90)
    rows = [
        "| path | `--max-connection-age-s` | client pods | seconds to 40% on the new replica | "
        "DNS queries |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        reached = (
            f"{run.seconds_to_fair_share:g}"
            if run.seconds_to_fair_share is not None
            else f"not within {run.seconds_after_ready[-1]:.0f} s"
        )
        age = f"{run.max_connection_age_s:g}" if run.max_connection_age_s else "off (0)"
        queries = str(run.dns_queries) if run.mode == "headless" else "-"
        rows.append(f"| {run.mode} | {age} | {run.callers} | {reached} | {queries} |")
    page = docs / "balance.md"
    page.write_text(
        "# Load balancing after a scale-up (generated)\n\n"
        f"Written by `{command}` (bench/balance.py: how it measures is in its docstring). "
        'The policy and what to set are in deploy.md, "Load balancing".\n\n'
        + "\n".join(rows)
        + "\n\n![new replica's share of calls over time](images/balance.png)\n"
    )
    (docs / "balance.json").write_text(json.dumps([asdict(r) for r in runs], indent=1) + "\n")
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.balance", description=__doc__)
    parser.add_argument("--ages", type=float, nargs="+", default=[0, 15, 60])
    parser.add_argument("--modes", nargs="+", default=["clusterip", "headless"])
    parser.add_argument("--callers", type=int, default=6, help="client pods (processes)")
    parser.add_argument(
        "--observe-s",
        type=float,
        default=0,
        help="seconds to watch (default: 1.5 x age + 15, at least 40)",
    )
    parser.add_argument("--docs", type=Path, default=_ROOT / "docs")
    parser.add_argument("--logs", type=Path, default=_ROOT / "bench" / "results" / "balance")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    runs = []
    for mode in args.modes:
        for age in args.ages:
            observe_s = args.observe_s or max(40.0, 1.5 * age + 15)
            runs.append(measure(mode, age, args.callers, observe_s, args.logs))
    command = "python -m bench.balance " + " ".join(argv if argv is not None else sys.argv[1:])
    print(report(runs, args.docs, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
