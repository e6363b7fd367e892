"""Channel construction shared by the sync and asyncio clients: load balancing, TLS, sizes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

# round_robin spreads calls over every address a `dns:///name:port` target resolves to
# (one per replica behind a headless Service); harmless for a plain host:port.
_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# Keepalive within the server's policy (docs/generate.md, "Keepalive": pings at most every 5 s
# are accepted): a ping every 30 s keeps idle connections open through load balancers and NATs
# that drop silent ones after a minute or more, and finds a dead connection within 40 s.
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class TlsConfig:
    """Server verification (root CA) and, for mutual TLS, the client's certificate and key."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name_override: str | None = None

    @classmethod
    def from_files(
        cls,
        root_ca: str | Path | None = None,
        certificate: str | Path | None = None,
        key: str | Path | None = None,
        server_name_override: str | None = None,
    ) -> TlsConfig:
        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        if (certificate is None) != (key is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        return cls(read(root_ca), read(certificate), read(key), server_name_override)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


def channel_options(tls: TlsConfig | None) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
        # Our own retries handle UNAVAILABLE with backoff; keep gRPC's transparent ones too.
        ("grpc.enable_retries", 1),
        # Notice a (re)started replica within a second or two rather than gRPC's default 2 min.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    if tls is not None and tls.server_name_override:
        options.append(("grpc.ssl_target_name_override", tls.server_name_override))
    return options


def sync_channel(target: str, tls: TlsConfig | None) -> grpc.Channel:
    options = channel_options(tls)
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, tls.credentials(), options=options)


def aio_channel(target: str, tls: TlsConfig | None) -> grpc.aio.Channel:
    options = channel_options(tls)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, tls.credentials(), options=options)
