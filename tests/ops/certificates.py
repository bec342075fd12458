"""Test certificates made with the openssl command: a CA, a server and a client."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server: Pair  # for localhost and 127.0.0.1
    client: Pair  # signed by the same CA
    stranger: Pair  # a client certificate from a CA the server does not know


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _authority(folder: Path, name: str) -> Pair:
    pair = Pair(folder / f"{name}.pem", folder / f"{name}.key")
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", pair.key, "-out", pair.cert, "-days", "2",
        "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return pair


def _signed(folder: Path, name: str, authority: Pair, extensions: str) -> Pair:
    pair = Pair(folder / f"{name}.pem", folder / f"{name}.key")
    request = folder / f"{name}.csr"
    config = folder / f"{name}.ext"
    config.write_text(extensions)
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", pair.key, "-out", request, "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", request, "-CA", authority.cert, "-CAkey", authority.key,
        "-CAcreateserial", "-out", pair.cert, "-days", "2", "-extfile", config,
    )  # fmt: skip
    return pair


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    authority = _authority(folder, "test-ca")
    server = _signed(
        folder,
        "server",
        authority,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    client = _signed(folder, "client", authority, "extendedKeyUsage=clientAuth\n")
    other = _authority(folder, "other-ca")
    stranger = _signed(folder, "stranger", other, "extendedKeyUsage=clientAuth\n")
    return Certificates(ca=authority.cert, server=server, client=client, stranger=stranger)
