"""Write docs/reliability.md from the soak's results (docs/reliability.json), never by hand.

`make soak` calls `save` at the end of its session; `python -m tests.soak.report` re-renders the
page from the committed JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.markdown import table

_DOCS = Path(__file__).resolve().parents[2] / "docs"
RESULTS = _DOCS / "reliability.json"
PAGE = _DOCS / "reliability.md"


# Sections that carry their own "environment" (when and where they ran), so that a run of
# them alone (pytest tests/soak/test_hostile_soak.py --soak) updates them and keeps the others.
_SELF_DESCRIBED = {"hostile"}


def save(results: dict[str, Any]) -> None:
    merged = dict(results)
    if RESULTS.exists() and set(results) - {"environment"} <= _SELF_DESCRIBED:
        merged = json.loads(RESULTS.read_text(encoding="utf-8"))
        for key in _SELF_DESCRIBED & set(results):  # scenario by scenario: -k runs some
            merged[key] = {**merged.get(key, {}), **results[key]}
    text = json.dumps(merged, indent=2, sort_keys=True) + "\n"
    RESULTS.write_text(text, encoding="utf-8")
    PAGE.write_text(render(json.loads(text)), encoding="utf-8")  # what `main` renders, exactly


def _checks(section: dict[str, Any]) -> list[str]:
    checks = section.get("checks")
    if not checks:
        return ["_The run stopped before its checks; see the numbers above._", ""]
    rows = [
        [name, "pass" if check["passed"] else "**FAIL**", str(check["measured"])]
        for name, check in checks.items()
    ]
    return [table(["check", "result", "measured"], rows), ""]


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value:,.0f}" for key, value in sorted(counts.items())) or "none"


def _latency(run: dict[str, Any]) -> list[str]:
    rows = [
        [code, f"{run['codes'][code]:,}"]
        + [f"{stats[key]:.2f}" for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms")]
        for code, stats in sorted(run["latency"].items())
    ]
    return [table(["code", "calls", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows), ""]


def _fuzz(fuzz: dict[str, Any]) -> list[str]:
    lines = [
        "## Fuzzing (hypothesis, one real server process)",
        "",
        f"- Cases tried: **{fuzz['total']:,}** ({_counts(fuzz['cases'])}).",
        f"- Answers seen by the client: {_counts(fuzz['codes'])}.",
        f"- Fields named by the refusals: {_counts(fuzz['fields'])}.",
        f"- The server's own count (`cvae_requests_total` by code): "
        f"{_counts(fuzz.get('server_codes', {}))}.",
        f"- Resident memory (VmRSS) after warm-up {fuzz['rss_before_mib']:.1f} MiB, after the "
        f"campaign {fuzz['rss_after_mib']:.1f} MiB (tolerance {fuzz['rss_tolerance_mib']:.0f} "
        "MiB).",
        f"- Failures (answers breaking the rule): **{len(fuzz['failures'])}**.",
    ]
    lines += [f"  - `{failure[:300]}`" for failure in fuzz["failures"][:20]]
    return [*lines, "", *_checks(fuzz)]


def _overload(overload: dict[str, Any]) -> list[str]:
    setup, rss = overload["setup"], overload.get("rss_mib")
    capacity = overload.get("capacity")
    flags = " ".join(setup.get("server_args", []))
    lines = [
        f"## Overload (4x capacity for 30 s): {setup.get('configuration', 'default settings')}",
        "",
        f"Server flags beyond the defaults: `--queue-size {setup['queue_size_images']}` "
        f"{f'and `{flags}`' if flags else 'only'}.",
        "",
        f"Load generator: {setup['load_generator']}. Calls of {setup['images_per_call']} images, "
        f"deadline {setup['deadline_s']} s; server queue bound {setup['queue_size_images']} "
        f"images; decoder: {setup['decoder']}.",
        "",
    ]
    if capacity:
        lines += [
            f"- Capacity ({setup['capacity_callers']} closed-loop callers, "
            f"{capacity['duration_s']:.0f} s): **{capacity['accepted_rate']:.1f} calls/s** "
            f"({capacity['accepted_rate'] * setup['images_per_call']:,.0f} images/s).",
        ]
    for name, title in (("overload", "Overload"), ("recovery", "Recovery")):
        run = overload.get(name)
        if run is None:
            continue
        offered = f", offered {run['offered_rate']:.1f} calls/s" if run["offered_rate"] else ""
        lines += [
            f"- {title}{offered}: sent {run['calls']:,} calls ({run['sent_rate']:.1f}/s); "
            f"accepted (OK) {run['codes'].get('OK', 0):,}, refused (RESOURCE_EXHAUSTED) "
            f"{run['codes'].get('RESOURCE_EXHAUSTED', 0):,}; accepted rate "
            f"{run['accepted_rate']:.1f} calls/s. Codes: {_counts(run['codes'])}.",
            "",
            *_latency(run),
        ]
    if rss:
        lines += [
            f"- Resident memory (VmRSS): {rss['baseline']:.1f} MiB before, peak "
            f"{rss['peak']:.1f} MiB during, {rss['after']:.1f} MiB after (bound: baseline + "
            f"{rss['bound']:.0f} MiB).",
            "",
        ]
    server_side = overload.get("server_side")
    if server_side:
        lines += [
            f"- The server's own histogram (`cvae_request_duration_seconds`, from handler start "
            f"to answer) during the overload: {server_side['calls']:,.0f} Generate calls, "
            f"{server_side['refused']:,.0f} refused, {server_side['within_4ms']:,.0f} answered "
            "within 4 ms. The client-side latencies above also hold the time a call waits for "
            "the server's event loop and for CPU before its handler starts.",
            "",
        ]
    return [*lines, *_checks(overload)]


def _hostile(hostile: dict[str, Any]) -> list[str]:
    env = hostile["environment"]
    lines = [
        "## Hostile clients (issue 14: one connection, stream or process must not deny service)",
        "",
        f"`tests/soak/test_hostile_soak.py`, run {env['started_utc']} UTC (load average "
        f"{env['load_average_at_start'][0]:.1f} at its start), each scenario against its own "
        "`cvae serve` (the tests' small decoder, default settings unless named). A *fresh "
        "client* makes one health check and one one-image Generate at a time, as a Kubernetes "
        "probe and a light caller would; attackers that need CPU run in processes of their own.",
        "",
    ]
    titles = {
        "half_sent": "Half-sent calls and Watch streams on one connection (item 1)",
        "streams": "Unread GenerateStream calls (item 2)",
        "descriptors": "Idle connections under RLIMIT_NOFILE 1024 (item 3)",
        "event_loop": "Big bad requests and the event loop (item 4)",
        "hung_worker": "A stopped worker under --workers 2 (item 5)",
    }
    for key, title in titles.items():
        if key in hostile:
            lines += [f"### {title}", "", *_checks(hostile[key])]
    return lines


def render(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        "# Reliability: soak results",
        "",
        "Written by `tests/soak/report.py` from `docs/reliability.json`, which `make soak` "
        "(`pytest tests/soak --soak`) produced; do not edit by hand.",
        "",
        f"Run started {env['started_utc']} UTC on a shared machine with {env['cpus']} CPUs "
        f"(load average {env['load_average_at_start'][0]:.1f} at the start, "
        f"{env.get('load_average_at_end', [float('nan')])[0]:.1f} at the end, from other "
        f"work), at nice {env['nice']}: timings are those of a busy machine. Python "
        f"{env['python']}, grpcio {env['grpcio']}, onnxruntime {env['onnxruntime']}, "
        f"hypothesis {env['hypothesis']}.",
        "",
    ]
    if "fuzz" in results:
        lines += _fuzz(results["fuzz"])
    for key in sorted(key for key in results if key.startswith("overload")):  # one per config
        lines += _overload(results[key])
    if "hostile" in results:
        lines += _hostile(results["hostile"])
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    PAGE.write_text(render(json.loads(RESULTS.read_text(encoding="utf-8"))), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
