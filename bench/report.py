"""docs/benchmarks.md from one run's results (every number in it comes from that run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import markdown as md

_FINDINGS = Path(__file__).with_name("findings.md")
_METHOD = Path(__file__).with_name("method.md")


def _machine(results: dict[str, Any]) -> str:
    m = results["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    load_start = ", ".join(f"{x:.2f}" for x in m["load_average_at_start"])
    load_end = ", ".join(f"{x:.2f}" for x in m.get("load_average_at_end", []))
    return (
        f"- Measured {m['measured_at']} on **{m['cpu_model']}**, {m['cores']} cores "
        f"({m['usable_cores']} usable), {m['memory_gib']} GiB; flags {' '.join(m['cpu_flags'])}\n"
        f"- Load average at start {load_start}; at end {load_end} (the bench itself adds ~2)\n"
        f"- Python {m['python']}, {packages}; {m['h2load']}"
    )


def _floor(results: dict[str, Any]) -> str:
    rows = [
        [
            r["batch"],
            r["threads"],
            r["opt_level"],
            r["images_per_s"],
            r["gflops_per_s"],
            r["call_p50_ms"],
        ]
        for r in results["floor"]
    ]
    return md.table(
        ["batch", "threads", "graph opt", "images/s", "GFLOP/s", "p50 per call (ms)"], rows
    )


def _torch_eager(results: dict[str, Any]) -> str:
    eager = results.get("torch_eager") or {}
    if "rates" not in eager:
        return f"PyTorch eager reference: {eager.get('skipped', 'not run')}."
    table = md.table(
        ["batch", "threads", "images/s", "GFLOP/s", "p50 per call (ms)"],
        [
            [r["batch"], r["threads"], r["images_per_s"], r["gflops_per_s"], r["call_p50_ms"]]
            for r in eager["rates"]
        ],
    )
    return (
        f"PyTorch eager reference (decoder of `{eager['checkpoint']}`; its images differ from the "
        f"ONNX model's by at most {eager['max_abs_difference_vs_onnx']:.2g}):\n\n{table}"
    )


def _sections(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every server measured under load: the service's configurations, the gRPC floor, Triton."""
    return [
        *results.get("service", []),
        results.get("grpc_floor", {}),
        results.get("triton", {}),
    ]


def _load_rows(results: dict[str, Any]) -> str:
    rows = []
    for section in _sections(results):
        every = [*section.get("rows", []), *section.get("oip_grpc_rows", []),
                 *section.get("oip_http_rows", [])]  # fmt: skip
        for row in every:
            config = row.get("config", section.get("config"))
            if "error" in row:
                rows.append(
                    [row["server"], config, row["scenario"], f"error: {row['error']}"] + [None] * 7
                )
                continue
            rows.append([
                row["server"], config, row["scenario"], row["images_per_s"],
                row["requests_per_s"], row["p50_ms"], row["p90_ms"], row["p99_ms"],
                row.get("server_cpu_cores"), row["requests_ok"], row.get("grpc_status_verified"),
            ])  # fmt: skip
    header = ["server", "config", "scenario", "images/s", "requests/s", "p50 ms", "p90 ms",
              "p99 ms", "server CPU (cores)", "calls", "grpc-status OK"]  # fmt: skip
    return md.table(header, rows)


def _errors(results: dict[str, Any]) -> str:
    lines = []
    for section in _sections(results):
        if section.get("error"):
            lines.append(f"- **{section.get('config', '?')}**: {section['error']}")
    return "\n".join(lines)


def _profiles(results: dict[str, Any]) -> str:
    parts = []
    for section in results.get("service", []):
        for name, found in section.get("profiles", {}).items():
            if "error" in found:
                parts.append(f"**{name}**: {found['error']}")
                continue
            load = found.get("load", {})
            cpu_ms = (
                found["server_cpu_cores"] / load["requests_per_s"] * 1000
                if load.get("requests_per_s")
                else None
            )
            busy = ", ".join(
                f"{thread} {share:.0%}" for thread, share in found.get("thread_busy", {}).items()
            )
            busy_text = f" Threads seen running (share of wall time): {busy}." if busy else ""
            parts.append(
                f"**{name}** ({section['config']}): {found['samples']} samples, server used "
                f"{found['server_cpu_cores']:.2f} cores at "
                f"{load.get('requests_per_s', 0):,.0f} requests/s "
                f"= {md.cell(cpu_ms)} ms of CPU per request.{busy_text}\n\n"
                + md.table(
                    ["where the samples were (self)", "share"],
                    [[f"`{f}`", f"{s:.1%}"] for f, s in found["self"]],
                )
                + "\n\n"
                + md.table(
                    ["on the stack (inclusive)", "share"],
                    [[f"`{f}`", f"{s:.1%}"] for f, s in found["inclusive"]],
                )
            )
    return "\n\n".join(parts) or "Not run."


def _dataplane(results: dict[str, Any]) -> str:
    section = results.get("dataplane") or {}
    rows = [
        [r["intra_op_threads"], r["concurrency"], r["calls_per_s"], r["cpu_cores"],
         r["cpu_ms_per_call"]]
        for r in section.get("rows", [])
    ]  # fmt: skip
    text = (
        "The service's own request path without gRPC (parse, sample, DynamicBatcher, "
        "onnxruntime, encode, serialize), single-image calls on one event loop, in process:\n\n"
        + md.table(
            ["ORT threads", "concurrent calls", "calls/s", "CPU (cores)", "CPU ms per call"], rows
        )
    )
    if section.get("error"):
        text += f"\n\nIncomplete: {section['error']}"
    return text


def _streams(results: dict[str, Any]) -> str:
    lines = []
    for section in results.get("service", []):
        s = section.get("stream")
        if s:
            lines.append(
                f"- cvae ({section['config']}): {s['images']:,} images in {s['chunks']} chunks, "
                f"{s['seconds']:.2f} s = **{s['images_per_s']:,.0f} images/s**; first chunk "
                f"{s['first_chunk_ms']:.1f} ms, chunk gap p50 {s['chunk_gap_p50_ms']:.2f} ms, "
                f"p99 {s['chunk_gap_p99_ms']:.2f} ms ({s['tool']})"
            )
    return "\n".join(lines) or "Not run."


def _header(results: dict[str, Any]) -> str:
    model = results["model"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m bench`); do not edit by hand. "
        "Raw results: `docs/benchmarks.json`.",
        "",
    ]
    if results["quick"]:
        lines += ["> **Quick smoke run (`--quick`)**: too short for the numbers to mean much.", ""]
    machine = results["machine"]
    busy = machine["load_average_at_start"][0]
    if busy > 0.5 * (machine["usable_cores"] or 1):
        lines += [
            f"> **The machine was busy** (load average {busy:.1f} on {machine['usable_cores']} "
            "cores when the run started): every number below is depressed and noisy; rerun "
            "`make bench` on a quiet machine before drawing conclusions.",
            "",
        ]
    lines += [
        _machine(results),
        f"- Model: {model['name']} version {model['version']} (`{model.get('onnx', '?')}`, sha256 "
        f"{str(model.get('onnx_sha256', '?'))[:12]}…), {_flops(model.get('flops_per_image'))}",
    ]
    return "\n".join(lines)


def _flops(flops_per_image: float | None) -> str:
    if not flops_per_image:
        return "FLOPs not counted (model.json carries no training configuration)"
    return (
        f"{flops_per_image / 1e6:.1f} MFLOP per image (a multiply-add is 2; torch's FLOP counter "
        "on the decoder its model.json describes, training/describe.py)"
    )


def _targets(results: dict[str, Any]) -> str:
    ratios = results["ratios"]
    reference = ratios.get("onnxruntime_256_reference") or {}
    table = md.table(
        ["target", "measured", "met"],
        [[t["target"], t["shown"], t["pass"]] for t in results["targets"]],
    )
    return (
        f"{table}\n\nService / in-process onnxruntime for 2 × 256 images: "
        f"{md.cell(ratios['service_big_vs_onnxruntime_256'])} (reference: the fastest in-process "
        f"rate at batch 256, {md.cell(reference.get('images_per_s'))} images/s with "
        f"{reference.get('threads')} thread(s), graph optimization {reference.get('opt_level')})."
        f"\n\n{_errors(results)}"
    )


def markdown(results: dict[str, Any], plot_files: dict[str, str]) -> str:
    comparison = md.table(
        ["scenario", "service / Triton (images/s)"],
        [[name, value] for name, value in results["ratios"]["service_vs_triton"].items()],
    )
    parts = [
        _header(results),
        "## Targets (the speed bars, this run)",
        _targets(results),
        "## 1. The floor: onnxruntime in process",
        f"![floor]({plot_files.get('floor', '')})",
        _floor(results),
        _torch_eager(results),
        "## 2–3. The service and Triton over gRPC, same load generator",
        f"![throughput]({plot_files.get('throughput', '')})\n![p99]({plot_files.get('p99', '')})",
        _load_rows(results),
        comparison,
        _dataplane(results),
        "One stream of the whole job (Triton has no server streaming for this model, so the same "
        "job runs there, and on the service too, as back-to-back calls of 256 images: the "
        "`job-…-as-calls-of-256` rows above):",
        _streams(results),
        "## Profile of the service under load (py-spy)",
        _profiles(results),
        _METHOD.read_text().strip(),
    ]
    if _FINDINGS.exists():
        parts.append(_FINDINGS.read_text().strip())
    return "\n\n".join(part for part in parts if part) + "\n"
