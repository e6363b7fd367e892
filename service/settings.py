"""The one settings object of the service: flags and `CVAE_*` variables, validated at start.

Each field below is documented on the lines after it; `add_arguments` turns every field into a
flag (`max_batch` -> `--max-batch`) and `from_sources` reads, in order of precedence, the flag,
then the environment variable (`CVAE_MAX_BATCH`), then the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "CVAE_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A setting has a value outside its allowed range; the message names flag and variable."""


def _about(
    help: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
    dest: str = "",
    aliases: tuple[str, ...] = (),
) -> dict[str, Any]:
    """What a setting's flag says and what values it allows (dataclass field metadata).

    `aliases`: earlier names of the setting, still accepted as flags and `CVAE_*` variables.
    """
    metadata = {
        "help": help, "minimum": minimum, "maximum": maximum, "choices": choices, "dest": dest,
        "aliases": aliases,
    }  # fmt: skip
    return metadata


@dataclass(frozen=True)
class ServiceSettings:
    """Everything `cvae serve` can be told."""

    model_repository: Path = field(
        default=Path("models"), metadata=_about("folder of <name>/<version>/model.*")
    )
    """The model repository (docs/model-repository.md); the newest version is served."""
    model_name: str = field(
        default="",
        metadata=_about("default model (calls that name none); empty: the repository's only one"),
    )
    """Every <name> folder of the repository is served; this one answers calls with an empty
    model_name. Required when there are several."""
    host: str = field(default="0.0.0.0", metadata=_about("address to listen on"))
    """Interface the gRPC server binds ("0.0.0.0" all IPv4, "[::]" all IPv6 and IPv4)."""
    port: int = field(
        default=50051, metadata=_about("gRPC port; 0 picks a free one", maximum=65535)
    )
    """TCP port of the gRPC server; with 0 the system picks one, and the SERVING log line says
    which."""
    metrics_port: int = field(
        default=9464, metadata=_about("Prometheus /metrics port; 0 turns it off", maximum=65535)
    )
    """TCP port of the Prometheus HTTP endpoint (same host); 0 means no metrics endpoint."""
    health_port: int = field(
        default=0,
        metadata=_about("plaintext port serving gRPC health only; 0: none", maximum=65535),
    )
    """A second gRPC listener (same host) with grpc.health.v1 and nothing else, always
    plaintext: for kubelet gRPC probes, which cannot speak TLS, when --tls-cert is set. It
    reports the same statuses as the main port and takes no Generator call."""
    http_port: int = field(
        default=0,
        metadata=_about("Open Inference Protocol HTTP/JSON port; 0: off", maximum=65535),
    )
    """TCP port (same host) of the Open Inference Protocol's HTTP/JSON endpoints (/v2/...), on
    the same data plane as gRPC; 0 serves none."""
    max_batch: int = field(
        default=128, metadata=_about("most images in one decoder call", minimum=1, maximum=65536)
    )
    """Upper bound of a decoder batch; larger requests are split into pieces of this size. The
    default is the smallest batch that decodes as fast per image as larger ones: intermediate
    tensors grow with it, once per decoder slot (measured: docs/benchmarks.md)."""
    max_delay_ms: float = field(
        default=2.0, metadata=_about("most ms a request waits to be merged", minimum=0)
    )
    """How long a queued request may be held back to fill a batch while the runtime is busy.

    A request that finds the runtime idle is dispatched at once, never delayed."""
    batching: bool = field(
        default=True, metadata=_about("merge concurrent requests into one decoder call")
    )
    """When false each request (or piece of one) runs alone; requests are never merged."""
    queue_size: int = field(
        default=4096, metadata=_about("most images waiting; beyond: RESOURCE_EXHAUSTED", minimum=1)
    )
    """Bound of the batching queue, in images; a request that does not fit is refused at once."""
    max_concurrent_rpcs: int = field(
        default=0,
        metadata=_about(
            "most calls handled at once; beyond: RESOURCE_EXHAUSTED; 0: auto, -1: no limit",
            minimum=-1,
        ),
    )
    """Limit on data-plane calls being handled (health and reflection never count): a call
    takes a slot once its request message has arrived (service/guard.py), and an excess call is
    refused with RESOURCE_EXHAUSTED (cvae_refusals_total{reason="concurrency_limit"}) before its
    handler runs. 0 sizes it from the queue: queue_size // 8 (512 by default), at least 64; -1
    turns the limit off."""
    message_timeout_s: float = field(
        default=10.0,
        metadata=_about("most seconds from a call's headers to its request message", minimum=0.1),
    )
    """A call whose request message has not arrived this long after its headers (HEADERS and no
    DATA, or a length prefix promising more than is sent) is refused with RESOURCE_EXHAUSTED
    (reason message_timeout), and one that ends its request without a message gets
    INVALID_ARGUMENT at once: a half-sent call holds its HTTP/2 stream no longer than this."""
    max_streams_per_connection: int = field(
        default=1024,
        metadata=_about("most calls open at once on one HTTP/2 connection", minimum=1),
    )
    """grpc.max_concurrent_streams: bounds what one connection can hold open (half-sent calls,
    health Watch streams). Above --max-concurrent-rpcs, so that one busy channel still gets the
    server's fast RESOURCE_EXHAUSTED refusals instead of queueing in its own client."""
    max_health_watches: int = field(
        default=4096,
        metadata=_about("most health Watch streams open at once, all connections", minimum=1),
    )
    """A Watch stream never ends by itself and holds ~23 KiB (measured), and every status change
    writes to each: one beyond this cap is refused with RESOURCE_EXHAUSTED
    (cvae_refusals_total{reason="watch_limit"}), so that many connections times
    --max-streams-per-connection Watch streams cannot exhaust memory. Check is never capped; a
    gRPC client watches once per channel (client-side health checking)."""
    max_reflection_streams: int = field(
        default=64,
        metadata=_about("most server reflection streams open at once", minimum=1),
    )
    """Reflection (grpcurl, tooling) streams never end by themselves and hold ~25 KiB each: one
    beyond this cap is refused with RESOURCE_EXHAUSTED (cvae_refusals_total{reason=
    "reflection_limit"}). Tools open one per command."""
    max_pending_rpcs: int = field(
        default=64,
        metadata=_about(
            "calls waiting for the server's event loop; beyond: RESOURCE_EXHAUSTED; 0: no limit",
        ),
    )
    """gRPC core's queue of calls that arrived but were not yet taken by grpc.aio's event loop
    (grpc.server.max_pending_requests; the hard limit is twice this, calls between the two are
    refused at random with rising probability). When the loop falls behind, excess calls are
    refused by gRPC's C core without any Python work."""
    max_images_per_request: int = field(
        default=1024, metadata=_about("most images in one Generate", minimum=1)
    )
    """Per-request limit of Generate (GenerateStream has its own)."""
    max_images_per_stream: int = field(
        default=2_000_000, metadata=_about("most images in one stream", minimum=1)
    )
    """Per-request limit of GenerateStream; its memory stays bounded by the chunk size."""
    stream_memory_mib: float = field(
        default=256.0,
        metadata=_about(
            "most MiB all open streams may hold; beyond: RESOURCE_EXHAUSTED", minimum=1
        ),
    )
    """Budget of every GenerateStream open at once, like --queue-size for images: each holds its
    labels (one byte each), its latents if given, and two chunks being computed and written. A
    data-plane answer counts too, from its work until its client has read it (an unread one
    stays in gRPC's buffers until the connection closes). A call that would exceed it is refused
    at once (cvae_refusals_total{reason="stream_memory"}) and holds nothing."""
    stream_write_timeout_s: float = field(
        default=30.0,
        metadata=_about(
            "end a stream whose client takes no message for this many seconds", minimum=0.1
        ),
    )
    """A GenerateStream message that HTTP/2 flow control holds this long (the client stopped
    reading) ends the stream with RESOURCE_EXHAUSTED (cvae_refusals_total{reason=
    "write_stalled"}); the client resumes from its last offset. Sooner while the data plane's
    slots are all taken: a stream whose write has waited 1 s lends its slot to the next call
    (service/guard.py), so streams nobody reads never lock other callers out."""
    stream_chunk_size: int = field(
        default=256, metadata=_about("images per stream message by default", minimum=1)
    )
    """Chunk size of GenerateStream when the request leaves chunk_size at 0."""
    max_message_bytes: int = field(
        default=16 << 20, metadata=_about("most bytes in one gRPC message", minimum=1024)
    )
    """Limit on received and sent message size; larger messages are refused by gRPC."""
    max_connection_age_s: float = field(
        default=300.0, metadata=_about("close connections after this age", minimum=0)
    )
    """grpc.max_connection_age_ms: clients reconnect and so rebalance across replicas; 0 off."""
    max_connections: int = field(
        default=0, metadata=_about("most client connections at once; 0: from the file limit")
    )
    """grpc.max_allowed_incoming_connections; a connection beyond it is closed at once. 0 leaves
    256 descriptors of RLIMIT_NOFILE (raised to its hard limit at start) for everything else
    (model files, /metrics, logs), at most 16,384, so that connections can never make the
    server's own files fail with EMFILE. With --http-port the gRPC and HTTP ports get half each.
    Connections that never finish their handshake are closed after 10 s."""
    max_connection_age_grace_s: float = field(
        default=600.0, metadata=_about("seconds an aged connection's calls may still run")
    )
    """grpc.max_connection_age_grace_ms: an aged connection takes no new calls, and those still
    open on it get this long to finish before the connection is closed (a GenerateStream cut
    there resumes from its last offset). Bounded, so that no call keeps a connection forever."""
    max_connection_idle_s: float = field(
        default=300.0, metadata=_about("close connections without calls after this; 0: never")
    )
    """grpc.max_connection_idle_ms: a connection with no call open this long gets GOAWAY (a gRPC
    client reconnects on its next call), so idle connections do not pile up file descriptors."""
    grace_period_s: float = field(
        default=10.0,
        metadata=_about(
            "seconds to finish accepted work on SIGTERM", minimum=0, aliases=("grace_period",)
        ),
    )
    """On SIGTERM/SIGINT new calls are refused and accepted ones get this long to finish."""
    cpus: int = field(
        default=0, metadata=_about("CPUs the server may use; 0: its CPU affinity", minimum=0)
    )
    """The CPU budget that threads are sized from. In a container, set it to the CPU limit
    (the Deployment does, from the downward API): a limit does not change the affinity."""
    intra_op_threads: int = field(
        default=0, metadata=_about("onnxruntime threads per decoder call; 0: auto", minimum=0)
    )
    """onnxruntime intra-op threads per decoder call; 0 divides `cpus` by workers x decoder_slots
    (at least 1): on 2 CPUs, 2 slots of 1 thread."""
    workers: int = field(
        default=1,
        metadata=_about("server processes sharing the gRPC port", minimum=1, maximum=64),
    )
    """Above 1, `cvae serve` becomes a supervisor of this many server processes listening on one
    port (SO_REUSEPORT), each with its own event loop, batcher, model copy and health; /metrics
    (served by the supervisor) sums them. 1 is a single process that owns its port."""
    worker_liveness_s: float = field(
        default=10.0,
        metadata=_about("with --workers > 1: a worker silent this long counts as dead", minimum=1),
    )
    """Each worker's event loop beats every second into memory shared with the supervisor; one
    whose beat is this old (stopped, deadlocked, its loop stuck) is killed and handled as a
    worker that died: the others stop and the supervisor exits 1, so the pod is restarted."""
    decoder_slots: int = field(
        default=2, metadata=_about("decoder calls that may run at once", minimum=1, maximum=64)
    )
    """Batches that may run at once, each with intra_op_threads. A batch starts beside a running
    one only when it is big (half of max_batch images or more), or after max_delay_ms behind a
    big one: big requests use every slot, small ones merge into the next batch instead."""
    decoder_niceness: int = field(
        default=10, metadata=_about("nice value added to decoder threads", minimum=0, maximum=19)
    )
    """Decoder threads (and onnxruntime's) run this much below the event loop's CPU priority, so
    the loop refuses excess calls and answers health checks at once while the decoder is busy;
    the decoder still gets every cycle the loop leaves idle. 0 keeps one priority (Linux only)."""
    decoder_slice: int = field(
        default=32,
        metadata=_about("rows per onnxruntime call inside a batch; 0: the whole batch", minimum=0),
    )
    """A decoder thread runs a full batch (max_batch images: big calls, which also run two
    batches side by side and leave no core free) this many rows at a time, and yields the CPU
    in between (os.sched_yield). gRPC's threads and the event loop then find a core within one
    slice instead of waiting for the whole batch or a scheduler tick, so under overload excess
    calls are refused sooner (docs/reliability.md compares slicing with whole batches). The
    count is in decoder rows: a cheaper graph (the encoder, the posterior sampler) runs as many
    of its rows per call as take the same time (timed at load), so its slices are no shorter.
    Smaller batches, and models whose rows depend on their batch (checked at load), always run
    whole."""
    reload_interval_s: float = field(
        default=5.0,
        metadata=_about(
            "seconds between repository scans; 0: SIGHUP only", aliases=("reload_interval",)
        ),
    )
    """How often the repository is scanned for new versions; SIGHUP scans at once."""
    keep_versions: int = field(
        default=2, metadata=_about("model versions kept loaded", minimum=1, maximum=16)
    )
    """Newest versions kept in memory so that pinned requests to the previous one still work."""
    model_load_timeout_s: float = field(
        default=60.0,
        metadata=_about("most seconds to read, load and warm up a version", minimum=0.1),
    )
    """A version that takes longer to load is refused (its load is abandoned), so that one
    hostile file cannot hold the reload watcher or start-up; the shipped one loads in ~1 s."""
    max_model_bytes: int = field(
        default=1 << 30,
        metadata=_about("most bytes of one version's files together", minimum=1),
    )
    """A bigger version is refused before its files are read (model.json alone: at most 1 MiB)."""
    log_format: str = field(
        default="text", metadata=_about("log line format", choices=("text", "json"))
    )
    """"json" writes one JSON object per line (for log collectors), "text" a plain line."""
    log_level: str = field(
        default="INFO",
        metadata=_about(
            "logging level",
            choices=("DEBUG", "INFO", "WARNING", "ERROR"),
            # `cvae --log-level` (before the subcommand) owns the name "log_level".
            dest="serve_log_level",
        ),
    )
    """Threshold of the service's logs."""
    tls_cert: Path | None = field(
        default=None, metadata=_about("PEM server certificate (turns TLS on)")
    )
    """Server certificate chain; with tls_key, the port speaks TLS only."""
    tls_key: Path | None = field(
        default=None, metadata=_about("PEM private key of the server certificate")
    )
    """Private key matching tls_cert."""
    tls_client_ca: Path | None = field(
        default=None, metadata=_about("PEM CA bundle; clients must present a cert")
    )
    """With it, mutual TLS: only clients with a certificate signed by this CA are accepted."""

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            _check_range(spec, getattr(self, spec.name))
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError(
                "--tls-cert and --tls-key (CVAE_TLS_CERT, CVAE_TLS_KEY) go together"
            )
        ports = [p for p in (self.port, self.metrics_port, self.health_port) if p]
        if len(ports) != len(set(ports)):
            raise SettingsError(
                f"--port ({self.port}), --metrics-port ({self.metrics_port}) and --health-port "
                f"({self.health_port}) must differ"
            )
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise SettingsError("--tls-client-ca (CVAE_TLS_CLIENT_CA) needs --tls-cert/--tls-key")
        if self.queue_size < self.max_images_per_request:
            raise SettingsError(
                f"--queue-size ({self.queue_size}) must be at least --max-images-per-request "
                f"({self.max_images_per_request}), or such requests could never be queued"
            )
        if self.stream_chunk_size > self.max_images_per_request:
            raise SettingsError(
                f"--stream-chunk-size ({self.stream_chunk_size}) must not exceed "
                f"--max-images-per-request ({self.max_images_per_request})"
            )

    @property
    def concurrent_rpcs_limit(self) -> int | None:
        """The value for grpc.aio.server(maximum_concurrent_rpcs=...); None: no limit."""
        if self.max_concurrent_rpcs < 0:
            return None
        return self.max_concurrent_rpcs or max(64, self.queue_size // 8)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per settings field; defaults stay None so the environment can fill them."""
    for spec in dataclasses.fields(ServiceSettings):
        meta = spec.metadata
        default = spec.default
        if isinstance(default, bool):
            shown = f" (default {'on' if default else 'off'})"
        elif default in (None, ""):
            shown = ""
        else:
            shown = f" (default {default})"
        parser.add_argument(
            flag_name(spec.name),
            *(flag_name(alias) for alias in meta["aliases"]),
            dest=_dest(spec),
            default=None,
            metavar=spec.name.upper(),
            help=f"{meta['help']}{shown}; env {env_name(spec.name)}",
        )


def from_sources(
    arguments: argparse.Namespace | Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServiceSettings:
    """Build settings from flags (highest precedence), then `CVAE_*` variables, then defaults."""
    given = vars(arguments) if isinstance(arguments, argparse.Namespace) else dict(arguments or {})
    environ = os.environ if environ is None else environ
    types = typing.get_type_hints(ServiceSettings)
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(ServiceSettings):
        raw = given.get(_dest(spec))
        source = flag_name(spec.name)
        for variable in map(env_name, (spec.name, *spec.metadata["aliases"])):
            if raw is None and variable in environ:
                raw, source = environ[variable], variable
        if raw is not None:
            value = _convert(raw, types[spec.name], source)
            for choice in spec.metadata["choices"] or ():
                if isinstance(value, str) and value.lower() == choice.lower():
                    value = choice  # "info" means "INFO"
            values[spec.name] = value
    return ServiceSettings(**values)


def _dest(spec: dataclasses.Field[Any]) -> str:
    return spec.metadata["dest"] or spec.name


def _convert(raw: Any, kind: Any, source: str) -> Any:
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    try:
        if kind is bool:
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError("expected one of " + ", ".join(sorted(_TRUE | _FALSE)))
        if kind is int:
            return int(text.replace("_", ""))
        if kind is float:
            number = float(text)
            if not math.isfinite(number):
                raise ValueError("must be finite")
            return number
        if kind is Path:
            return Path(text)
        if kind == Path | None:
            return Path(text) if text else None
        return text
    except ValueError as error:
        raise SettingsError(f"{source}={raw!r}: {error}") from None


def _check_range(spec: dataclasses.Field[Any], value: Any) -> None:
    meta = spec.metadata
    where = f"{flag_name(spec.name)} ({env_name(spec.name)})"
    if meta["choices"] is not None and value not in meta["choices"]:
        raise SettingsError(f"{where}: {value!r} is not one of {', '.join(meta['choices'])}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = meta["minimum"], meta["maximum"]
        if low is None and spec.default is not None and isinstance(spec.default, int | float):
            low = 0
        if (low is not None and value < low) or (high is not None and value > high):
            allowed = (
                f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
            )
            raise SettingsError(f"{where}: {value} is outside {allowed}")
