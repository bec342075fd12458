"""Server credentials from --tls-cert-file/--tls-key-file, and --tls-client-ca-file (mTLS)."""

from __future__ import annotations

from pathlib import Path

import grpc

from service.config import Settings


class TlsFilesError(ValueError):
    """The TLS flags or files cannot be used; the message is one line for the operator."""


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """None for plaintext; otherwise TLS, requiring client certificates when a CA is given."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    client_ca = settings.tls_client_ca_file
    if not cert and not key:
        if client_ca:
            raise TlsFilesError("--tls-client-ca-file needs --tls-cert-file and --tls-key-file")
        return None
    if not (cert and key):
        raise TlsFilesError("--tls-cert-file and --tls-key-file go together: give both")
    return grpc.ssl_server_credentials(
        [(_pem(key, "--tls-key-file"), _pem(cert, "--tls-cert-file"))],
        root_certificates=_pem(client_ca, "--tls-client-ca-file") if client_ca else None,
        require_client_auth=bool(client_ca),
    )


def _pem(path: str, flag: str) -> bytes:
    try:
        content = Path(path).read_bytes()
    except OSError as error:
        raise TlsFilesError(f"cannot read {flag} {path}: {error.strerror}") from None
    if b"-----BEGIN " not in content:
        raise TlsFilesError(f"{flag} {path} is not a PEM file")
    return content
