"""WatchUsers resume tokens: opaque, signed, naming one position in the change log.

A token is urlsafe base64 (no padding) of  version || position (8 bytes, big-endian) ||
HMAC-SHA256(key, version || position)[:16]. It can be read, but not forged or edited
without the server key, which every process serving the database shares (the page-token
key; a key of its own is derived from it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct

from service.domain.errors import FieldViolation, InvalidArgumentError

_VERSION = 1
_PAYLOAD = struct.Struct(">BQ")
_MAC_SIZE = 16
_LENGTH = 34  # characters of base64 for 25 bytes, without padding


class ResumeTokenError(InvalidArgumentError):
    def __init__(self) -> None:
        super().__init__(
            [
                FieldViolation(
                    "resume_token",
                    "is not a resume token this server issued; pass a UserChange's "
                    "resume_token back exactly as received, or leave it empty to start "
                    "from now",
                )
            ]
        )


class ResumeTokenCodec:
    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a resume token key must not be empty")
        self._key = hmac.new(key, b"users.v1 resume tokens", hashlib.sha256).digest()

    def issue(self, position: int) -> str:
        payload = _PAYLOAD.pack(_VERSION, position)
        token = base64.urlsafe_b64encode(payload + self._mac(payload))
        return token.rstrip(b"=").decode("ascii")

    def read(self, token: str) -> int:
        if len(token) != _LENGTH:
            raise ResumeTokenError()
        try:
            raw = base64.urlsafe_b64decode(token + "==")
        except (binascii.Error, ValueError):
            raise ResumeTokenError() from None
        if len(raw) != _PAYLOAD.size + _MAC_SIZE:
            raise ResumeTokenError()
        payload, mac = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
        # Only the canonical spelling: base64's unused low bits would let two texts pass.
        canonical = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") == token
        if not canonical or not hmac.compare_digest(mac, self._mac(payload)):
            raise ResumeTokenError()
        version, position = _PAYLOAD.unpack(payload)
        if version != _VERSION:
            raise ResumeTokenError()
        return int(position)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_SIZE]
