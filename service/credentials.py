"""TLS server credentials that follow the certificate files: a renewed certificate (cert-manager
rewriting a mounted Secret) is served to new connections without a restart.

gRPC asks the fetcher for a configuration at each new TLS handshake; it answers with a fresh one
only when a file's (mtime, size) changed since the last one it read, so a handshake costs three
stat calls. A renewal that cannot be read, is not PEM, whose key is not its certificate's or
whose certificate has expired is logged and the previous certificate stays in use. Open
connections keep the certificate they were made with. At start the same problems stop the
server with one line naming the file (gRPC itself would only fail to open the port, or start
with a certificate every client refuses).
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from service.settings import ServiceSettings

_LOGGER = logging.getLogger(__name__)


class CredentialsError(Exception):
    """A certificate, key or CA file cannot be read or is not PEM; the message names it."""


def read_pem(path: Path, flag: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CredentialsError(f"{path}: cannot read {flag} file ({error.strerror})") from None
    if b"-----BEGIN" not in data:
        raise CredentialsError(f"{path}: {flag} file is not PEM")
    return data


def check_server_pair(cert: bytes, key: bytes, cert_path: Path, key_path: Path) -> None:
    """The certificate chain parses, is valid now, and `key` is its first certificate's key."""
    try:
        chain = x509.load_pem_x509_certificates(cert)
    except ValueError as error:
        raise CredentialsError(
            f"{cert_path}: --tls-cert file holds no readable PEM certificate ({error})"
        ) from None
    try:
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as error:  # TypeError: it needs a password
        raise CredentialsError(
            f"{key_path}: --tls-key file holds no readable, unencrypted PEM private key ({error})"
        ) from None
    leaf = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if leaf.public_key().public_bytes(encoding, public) != private_key.public_key().public_bytes(
        encoding, public
    ):
        raise CredentialsError(
            f"{key_path}: --tls-key is not the private key of the certificate in {cert_path}"
        )
    now = datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc <= now:
        raise CredentialsError(
            f"{cert_path}: --tls-cert certificate expired on "
            f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC; every client would refuse it"
        )
    if leaf.not_valid_before_utc > now:
        raise CredentialsError(
            f"{cert_path}: --tls-cert certificate is not valid before "
            f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC (clock or certificate wrong?)"
        )


def check_client_ca(data: bytes, path: Path) -> None:
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as error:
        raise CredentialsError(
            f"{path}: --tls-client-ca file holds no readable PEM certificate ({error})"
        ) from None


class CertificateFiles:
    """The server's PEM files, read again when they change (the configuration fetcher)."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self._files = [(cert, "--tls-cert"), (key, "--tls-key")]
        if client_ca is not None:
            self._files.append((client_ca, "--tls-client-ca"))
        self._lock = threading.Lock()
        self._stamp = self._stamps()
        self.initial = self._configuration()  # raises CredentialsError: the server cannot start
        self.reloads = 0

    def _stamps(self) -> tuple[tuple[int, int], ...]:
        stamps = []
        for path, _ in self._files:
            try:
                status = path.stat()
                stamps.append((status.st_mtime_ns, status.st_size))
            except OSError:
                stamps.append((-1, -1))
        return tuple(stamps)

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key, *ca = (read_pem(path, flag) for path, flag in self._files)
        check_server_pair(cert, key, self._files[0][0], self._files[1][0])
        if ca:
            check_client_ca(ca[0], self._files[2][0])
        return grpc.ssl_server_certificate_configuration(
            [(key, cert)], root_certificates=ca[0] if ca else None
        )

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's fetcher: a new configuration when the files changed, else None (keep)."""
        with self._lock:
            stamp = self._stamps()
            if stamp == self._stamp:
                return None
            try:
                configuration = self._configuration()
            except CredentialsError as error:
                _LOGGER.warning("TLS files changed but cannot be used, keeping the old: %s", error)
                return None
            self._stamp = stamp
            self.reloads += 1
            _LOGGER.info("TLS certificate reloaded from %s", self._files[0][0])
            return configuration


def server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    """None for plaintext; otherwise credentials that reload the files when they change."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    files = CertificateFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    # The stubs say the fetcher returns a configuration; gRPC documents None as "keep".
    fetcher = cast(Callable[[], grpc.ServerCertificateConfiguration], files)
    return grpc.dynamic_ssl_server_credentials(
        files.initial, fetcher, require_client_authentication=settings.tls_client_ca is not None
    )
