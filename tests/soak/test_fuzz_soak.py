"""10,000 hypothesis cases (7,000 structured, 3,000 raw bytes) against one real server process."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2

from tests.reliability.fuzzing import run_campaign
from tests.reliability.memory import resident_mib
from tests.reliability.test_fuzz import RSS_TOLERANCE_MIB, warm_up
from tests.service.modelrepo import write_version
from tests.service.serverproc import ServerProcess
from tests.soak.conftest import record_checks

pytestmark = pytest.mark.timeout(3600)
STRUCTURED = 7_000
RAW = 3_000


def _server_codes(scrape: str) -> dict[str, float]:
    """cvae_requests_total summed by code, as the server counted them."""
    codes: dict[str, float] = {}
    for match in re.finditer(r"^cvae_requests_total\{([^}]*)\} (\S+)$", scrape, re.M):
        code = re.search(r'code="([^"]+)"', match.group(1))
        if code:
            codes[code.group(1)] = codes.get(code.group(1), 0.0) + float(match.group(2))
    return codes


def test_ten_thousand_fuzzed_requests(tmp_path: Path, soak_results: dict[str, Any]) -> None:
    root = tmp_path / "models"
    write_version(root, "1")
    section: dict[str, Any] = soak_results.setdefault("fuzz", {})
    with ServerProcess(root) as server:
        assert server.process is not None
        warm_up(server)
        before = resident_mib(server.process.pid)
        tally = run_campaign(server, structured=STRUCTURED, raw=RAW)
        after = resident_mib(server.process.pid)
        alive = server.process.poll() is None
        serving = alive and server.health() == health_pb2.HealthCheckResponse.SERVING
        server_codes = _server_codes(server.scrape()) if alive else {}
    section.update(tally.as_dict())
    section.update(
        rss_before_mib=before, rss_after_mib=after, rss_tolerance_mib=RSS_TOLERANCE_MIB,
        server_codes=server_codes,
    )  # fmt: skip
    bad_codes = {c for c, n in server_codes.items() if c in ("INTERNAL", "UNKNOWN") and n > 0}
    record_checks(
        section,
        {
            "at least 10,000 cases": (tally.total >= 10_000, f"{tally.total} cases"),
            "every answer OK or a client error naming the field": (
                not tally.failures,
                f"{len(tally.failures)} answers broke the rule",
            ),
            "never INTERNAL or UNKNOWN (server's own count)": (
                not bad_codes,
                f"server counted codes {sorted(server_codes)}",
            ),
            "server still up and SERVING": (serving, "SERVING" if serving else "down"),
            "memory back to baseline": (
                after <= before + RSS_TOLERANCE_MIB,
                f"VmRSS {before:.1f} MiB before, {after:.1f} MiB after "
                f"(tolerance {RSS_TOLERANCE_MIB:.0f} MiB)",
            ),
        },
    )
