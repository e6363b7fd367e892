"""Derives a pod's server limits (CVAE_* settings) from its memory limit, and writes them.

The server's memory is a sum of terms, each bounded by one setting; what the fixed terms leave
below the memory limit, less a stated margin, becomes the stream budget:

    baseline                           the warm process: runtime, the loaded model versions, arenas
  + queue_size x held_image            images queued (each gets decoded and encoded once)
  + decoder_slots x max_images x held  calls whose pieces are partly decoded
  + max_concurrent_rpcs x call         a request with latents, and gRPC/Python call state
  + max_connections x connection       each client connection's transport buffers
  + max_health_watches x watch         health Watch streams (they never end by themselves)
  + stream_memory_mib x stream_cost    every open GenerateStream (the service's own accounting
                                       of labels and chunks, times what it costs for real)
  + margin                             a fraction of the limit left unused
  <= the memory limit

`python deploy/limits.py` writes deploy/k8s/overlays/prod/limits.env for the prod memory limit
(read from the overlay) and the table of them in docs/deploy.md; `--memory-mib N` prints the
limits for another one, `--check` only compares (tests/deploy fails while either is stale).
tests/deploy/test_prod_limits.py runs the real server with these limits in a memory cgroup of
this size under the hostile-clients attacks and checks its peak stays below limit - margin.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROD = HERE / "k8s" / "overlays" / "prod"
OUTPUT = PROD / "limits.env"
DOC = HERE.parent / "docs" / "deploy.md"
_BEGIN = "<!-- prod-limits: written by deploy/limits.py (make prod-limits) -->"
_END = "<!-- prod-limits: end -->"

MIB = 1 << 20
MARGIN = 0.20
"""Share of the memory limit no term may use: allocator fragmentation and the free heap malloc
keeps while calls run (service/memory.py: up to its 64 MiB trim threshold, given back after a
second without calls; the attack of tests/deploy/test_prod_limits.py peaked at 454.6 MiB with it
and 457.3 MiB without), Python garbage not yet collected, page cache of the model files, and what
the measurements below did not see."""
BASELINE_MIB = 272
"""A warm prod server (the shipped models loaded: cvae-mnist's newest two versions and
cvae-mnist-fast's one, with their encoders and posterior samplers; a 1,000-image call decoded).
VmHWM with versions 4 and 5: 232-235 MiB when tests/deploy/test_prod_limits.py runs alone, and
250.5 and 250.9 MiB in two full-suite runs from fresh clones (the test prints it, with its
anonymous/file split, and fails above this); 202.5 MiB with versions 2 and 3. This is the worst
seen plus 8%."""
STREAM_COST = 1.25
"""Resident bytes per byte of the service's stream accounting (service/servicer.py,
stream_bytes): 34 unread 2M-label streams accounted 180 MiB and grew the server by 205 MiB
(1.14), plus gRPC's buffer of each stream's message being written."""
CALL_STATE_BYTES = 32 << 10
"""gRPC core and grpc.aio state of one call being handled (an estimate, not measured)."""
CONNECTION_BYTES = 64 << 10
"""One client connection's HTTP/2 read and write buffers (an estimate, not measured)."""
WATCH_BYTES = 23 << 10
"""One open health Watch stream (measured with --max-health-watches: service/settings.py)."""
COPIES = 3
"""Copies of an image's bytes alive while a call's response is built: the decoder's float32
output, the encoded tensor, the serialized message."""
_MESSAGE_ROUNDING = MIB


@dataclass(frozen=True)
class Model:
    """What the served model's size adds per image (the shipped cvae-mnist: 28x28, latent 16)."""

    pixels: int = 28 * 28
    latent_dim: int = 16

    @property
    def response_image_bytes(self) -> int:
        """One float32 image with its latents and label in a Generate response (the largest)."""
        return self.pixels * 4 + self.latent_dim * 4 + 6

    @property
    def held_image_bytes(self) -> int:
        return COPIES * self.response_image_bytes

    def request_bytes(self, images: int) -> int:
        """A Generate request of `images` labels with latents given (the largest legal one)."""
        return images * (2 + self.latent_dim * 4 + 2) + 256


@dataclass(frozen=True)
class Limits:
    """The settings one pod runs with, and the memory each term may take (bytes)."""

    memory_limit_mib: int
    queue_size: int
    max_images_per_request: int
    max_concurrent_rpcs: int
    max_connections: int
    max_streams_per_connection: int
    max_health_watches: int
    max_message_bytes: int
    stream_memory_mib: int
    decoder_slots: int
    terms: tuple[tuple[str, int], ...]

    @property
    def margin_bytes(self) -> int:
        return self.memory_limit_mib * MIB - sum(size for _, size in self.terms)

    def env(self) -> dict[str, str]:
        """The CVAE_* variables (docs/deploy.md, "Limits against hostile clients")."""
        return {
            "CVAE_QUEUE_SIZE": str(self.queue_size),
            "CVAE_MAX_IMAGES_PER_REQUEST": str(self.max_images_per_request),
            "CVAE_MAX_CONCURRENT_RPCS": str(self.max_concurrent_rpcs),
            "CVAE_MAX_CONNECTIONS": str(self.max_connections),
            "CVAE_MAX_STREAMS_PER_CONNECTION": str(self.max_streams_per_connection),
            "CVAE_MAX_HEALTH_WATCHES": str(self.max_health_watches),
            "CVAE_MAX_MESSAGE_BYTES": str(self.max_message_bytes),
            "CVAE_STREAM_MEMORY_MIB": str(self.stream_memory_mib),
            "CVAE_DECODER_SLOTS": str(self.decoder_slots),
        }


class LimitsError(ValueError):
    """The fixed terms do not leave the smallest stream budget under this memory limit."""


MIN_STREAM_MEMORY_MIB = 32
"""Below this a few default-chunk streams of a million labels fill the budget."""


def derive(
    memory_limit_mib: int,
    *,
    queue_size: int = 8192,
    max_images_per_request: int = 1024,
    max_concurrent_rpcs: int = 512,
    max_connections: int = 1024,
    max_streams_per_connection: int = 1024,
    max_health_watches: int = 1024,
    decoder_slots: int = 2,
    model: Model = Model(),
) -> Limits:
    """The limits for a pod of `memory_limit_mib`: the given sizes, and as stream budget what
    they leave below the limit less MARGIN. LimitsError when that is under
    MIN_STREAM_MEMORY_MIB: give the pod more memory, or lower a size."""
    if max_streams_per_connection <= max_concurrent_rpcs:
        raise LimitsError(
            "max_streams_per_connection must exceed max_concurrent_rpcs, so that one busy "
            "channel gets the server's fast refusals instead of queueing in its own client"
        )
    largest = model.response_image_bytes * max_images_per_request + 256
    message = max(largest, model.request_bytes(max_images_per_request))
    max_message_bytes = math.ceil(message / _MESSAGE_ROUNDING) * _MESSAGE_ROUNDING
    fixed = (
        ("baseline", BASELINE_MIB * MIB),
        ("queue", queue_size * model.held_image_bytes),
        ("decoding", decoder_slots * max_images_per_request * model.held_image_bytes),
        (
            "calls",
            max_concurrent_rpcs * (model.request_bytes(max_images_per_request) + CALL_STATE_BYTES),
        ),
        ("connections", max_connections * CONNECTION_BYTES),
        ("health watches", max_health_watches * WATCH_BYTES),
    )
    usable = int(memory_limit_mib * MIB * (1 - MARGIN))
    left = usable - sum(size for _, size in fixed)
    stream_memory_mib = int(left / STREAM_COST) // MIB
    if stream_memory_mib < MIN_STREAM_MEMORY_MIB:
        raise LimitsError(
            f"{memory_limit_mib} MiB leaves {max(0, left) // MIB} MiB for streams after "
            f"{', '.join(f'{name} {size // MIB}' for name, size in fixed)} MiB and a "
            f"{MARGIN:.0%} margin; at least {MIN_STREAM_MEMORY_MIB} MiB x {STREAM_COST} are "
            "needed: raise the memory limit or lower queue_size / max_concurrent_rpcs / "
            "max_connections / max_health_watches"
        )
    streams = ("streams", int(stream_memory_mib * MIB * STREAM_COST))
    return Limits(
        memory_limit_mib=memory_limit_mib,
        queue_size=queue_size,
        max_images_per_request=max_images_per_request,
        max_concurrent_rpcs=max_concurrent_rpcs,
        max_connections=max_connections,
        max_streams_per_connection=max_streams_per_connection,
        max_health_watches=max_health_watches,
        max_message_bytes=max_message_bytes,
        stream_memory_mib=stream_memory_mib,
        decoder_slots=decoder_slots,
        terms=(*fixed, streams),
    )


_QUANTITY = re.compile(r"^(\d+)(Mi|Gi)$")


def memory_mib(quantity: str) -> int:
    """A Kubernetes memory quantity in Mi or Gi (the forms the overlays use), in MiB."""
    match = _QUANTITY.match(quantity)
    if not match:
        raise ValueError(f"memory quantity {quantity!r}: write it in Mi or Gi")
    return int(match[1]) * (1024 if match[2] == "Gi" else 1)


def prod_memory_limit_mib() -> int:
    """The memory limit the prod overlay's Deployment patch sets (its one `memory:` limit)."""
    text = (PROD / "kustomization.yaml").read_text()
    block = text.split("limits:", 1)[1]
    match = re.search(r"memory:\s*(\S+)", block)
    assert match, "no memory limit in deploy/k8s/overlays/prod/kustomization.yaml"
    return memory_mib(match[1])


def table(limits: Limits) -> str:
    """The derivation as a markdown table: each term and what it may take."""
    rows = ["| term | MiB |", "|---|---:|"]
    rows += [f"| {name} | {size / MIB:.1f} |" for name, size in limits.terms]
    rows.append(f"| margin ({MARGIN:.0%} or more) | {limits.margin_bytes / MIB:.1f} |")
    rows.append(f"| **memory limit** | **{limits.memory_limit_mib}** |")
    return "\n".join(rows)


def doc_block(limits: Limits) -> str:
    """The generated part of docs/deploy.md: the prod settings and each term's share."""
    settings = ["| setting | prod |", "|---|---:|"]
    settings += [f"| `{name}` | {int(value):,} |" for name, value in limits.env().items()]
    return "\n".join(
        [
            _BEGIN,
            f"For the prod memory limit, {limits.memory_limit_mib} MiB:",
            "",
            *settings,
            "",
            table(limits),
            _END,
        ]
    )


def with_doc_block(document: str, limits: Limits) -> str:
    begin, end = document.index(_BEGIN), document.index(_END) + len(_END)
    return document[:begin] + doc_block(limits) + document[end:]


def render(limits: Limits) -> str:
    lines = [
        "# Generated by `python deploy/limits.py` (make prod-limits) for the prod memory limit:",
        f"# {limits.memory_limit_mib} MiB. Edit deploy/limits.py or the limit, not this file.",
        "# What each term may take (MiB):",
        *(f"#   {name}: {size / MIB:.1f}" for name, size in limits.terms),
        f"#   margin: {limits.margin_bytes / MIB:.1f}",
        *(f"{name}={value}" for name, value in limits.env().items()),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--memory-mib", type=int, help="print the limits for this limit")
    parser.add_argument("--check", action="store_true", help="fail if limits.env is stale")
    arguments = parser.parse_args(argv)
    if arguments.memory_mib is not None:
        try:
            limits = derive(arguments.memory_mib)
        except LimitsError as error:
            sys.stderr.write(f"{error}\n")
            return 2
        sys.stdout.write(render(limits) + "\n" + table(limits) + "\n")
        return 0
    limits = derive(prod_memory_limit_mib())
    wanted = {OUTPUT: render(limits), DOC: with_doc_block(DOC.read_text(), limits)}
    if arguments.check:
        stale = [path for path, text in wanted.items() if path.read_text() != text]
        for path in stale:
            sys.stderr.write(f"{path} is stale: run `make prod-limits`\n")
        return 1 if stale else 0
    for path, text in wanted.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
