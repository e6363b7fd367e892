"""Measures what unread unary answers hold: the prod server in a memory cgroup of the prod limit,
raw HTTP/2 clients with a zero window sending 1,024-image Generate calls for SECONDS.

    python -m tests.deploy.unread_answers [SECONDS [CONNECTIONS]]     (root: it makes a cgroup)

Prints the server's RSS every 10 s and the cgroup's peak and OOM kills (docs/deploy.md, "Prod
limits from the memory limit", cites the figures). A measurement, not a test: what it shows is
not bounded by a setting yet.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from cvae.v1 import generator_pb2 as pb
from tests.deploy.cgroup import memory_cgroup
from tests.deploy.manifests import ROOT, one, render
from tests.deploy.models import SHIPPED
from tests.deploy.server import running_server
from tests.deploy.test_prod_limits import limits_tool
from tests.service.rawh2 import RawConnection, grpc_frame

_GENERATE = "/cvae.v1.Generator/Generate"
_CALLS_PER_ROUND = 4


def _rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def main(seconds: float, parallel: int) -> None:
    limit_mib = limits_tool.prod_memory_limit_mib()
    scratch = Path(tempfile.mkdtemp(prefix="unread-answers-"))
    environ = dict(one(render("overlays/prod"), "ConfigMap")["data"]) | {
        "PATH": "/usr/bin:/bin",
        "HOME": str(scratch),
        "CVAE_HOST": "127.0.0.1",
        "CVAE_MODEL_REPOSITORY": str(SHIPPED),
        "CVAE_CPUS": "2",
        "CVAE_LOG_FORMAT": "text",
    }
    images = int(environ["CVAE_MAX_IMAGES_PER_REQUEST"])
    request = grpc_frame(pb.GenerateRequest(labels=[3] * images, seed=1).SerializeToString())
    with memory_cgroup(limit_mib << 20, "cvae-unread-answers") as cgroup:
        command = cgroup.command([sys.executable, "-m", "cvae", "serve"])
        with running_server(command, environ, scratch / "server.log", cwd=ROOT) as server:
            pid = server.process.pid
            connections: list[RawConnection] = []
            sent, start, shown = 0, time.monotonic(), 0.0
            while time.monotonic() - start < seconds and server.process.poll() is None:
                live = [c for c in connections if not c.closed and c.goaway is None]
                while len(live) < parallel:  # the connection age closed one: open another
                    connections.append(RawConnection("127.0.0.1", server.port, window=0))
                    live.append(connections[-1])
                for connection in live:
                    for _ in range(_CALLS_PER_ROUND):
                        stream_id = connection.open_call(_GENERATE)
                        connection.send(stream_id, request, end_stream=True)
                        sent += 1
                    connection.flush()
                for connection in connections:
                    connection.pump(0.25)
                if time.monotonic() - shown >= 10:
                    shown = time.monotonic()
                    print(
                        f"t={shown - start:.0f}s calls={sent} connections={len(connections)} "
                        f"rss={_rss_mib(pid)} MiB oom_kills={cgroup.oom_kills()}",
                        flush=True,
                    )
            for connection in connections:
                connection.close()
            print(
                f"server running: {server.process.poll() is None}, oom_kills: "
                f"{cgroup.oom_kills()}, cgroup peak {cgroup.peak_bytes() >> 20} MiB of {limit_mib}"
            )


if __name__ == "__main__":
    arguments = [*sys.argv[1:], "150", "1"]
    main(float(arguments[0]), int(arguments[1]))
