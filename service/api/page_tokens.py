"""Page tokens (API.md Listing): opaque, tamper-proof, bound to the request that issued them.

A token is urlsafe base64 (no padding) of  payload || HMAC-SHA256(key, payload),  where
payload is compact JSON  [version, scope digest, key type, key value, id]:
- the scope digest (SHA-256 of method, parent, filters and order_by; see
  service.domain.listing) binds the token to one request shape;
- key type and value are the last row's sort key: "i" an int, "s" a string, "t" a
  timestamp as whole microseconds since the epoch (exact, no float rounding).
A token can be read, but neither forged nor edited without the server key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from typing import TypeGuard

from service.domain.queries import Cursor, PageTokenError, SortKey

_VERSION = 1
_MAC_SIZE = 32
TOKEN_MAX = 1024  # characters; the longest real token (a 50-character name) is ~400
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_GARBLED = (
    "is not a page token this server issued; pass a next_page_token back exactly as "
    "received, or leave it empty for the first page"
)
_OTHER_REQUEST = (
    "was issued for a different request (method, user, filters or order_by); repeat the "
    "request that returned it, or leave it empty to start again"
)


class PageTokenCodec:
    """Implements service.domain.queries.PageTokens with one server key."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a page token key must not be empty")
        # A key of its own for this purpose, whatever else the configured secret signs.
        self._key = hmac.new(key, b"users.v1 page tokens", hashlib.sha256).digest()

    def issue(self, scope: str, cursor: Cursor) -> str:
        kind, value = _encode_key(cursor.key)
        payload = json.dumps(
            [_VERSION, _digest(scope), kind, value, cursor.id],
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode("utf-8")
        token = base64.urlsafe_b64encode(payload + self._mac(payload))
        return token.rstrip(b"=").decode("ascii")

    def read(self, scope: str, token: str) -> Cursor:
        if len(token) > TOKEN_MAX or not _ALPHABET.fullmatch(token):
            raise PageTokenError(_GARBLED)
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise PageTokenError(_GARBLED) from None
        payload, mac = raw[:-_MAC_SIZE], raw[-_MAC_SIZE:]
        # Only the canonical spelling: base64's unused low bits would let two texts pass.
        canonical = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") == token
        if not payload or not canonical or not hmac.compare_digest(mac, self._mac(payload)):
            raise PageTokenError(_GARBLED)
        # Signed by this server from here on: a shape error means an incompatible version.
        try:
            version, digest, kind, value, cursor_id = json.loads(payload)
        except (ValueError, TypeError):
            raise PageTokenError(_GARBLED) from None
        if version != _VERSION or not _is_int(cursor_id):
            raise PageTokenError(_GARBLED)
        if digest != _digest(scope):
            raise PageTokenError(_OTHER_REQUEST)
        return Cursor(_decode_key(kind, value), cursor_id)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()


def _digest(scope: str) -> str:
    return hashlib.sha256(scope.encode("utf-8")).hexdigest()[:32]


def _encode_key(key: SortKey) -> tuple[str, int | str]:
    if isinstance(key, datetime):
        return "t", (key - _EPOCH) // _MICROSECOND
    if isinstance(key, str):
        return "s", key
    return "i", key


def _decode_key(kind: object, value: object) -> SortKey:
    if kind == "t" and _is_int(value):
        try:
            return _EPOCH + value * _MICROSECOND
        except OverflowError:
            raise PageTokenError(_GARBLED) from None
    if kind == "s" and isinstance(value, str):
        return value
    if kind == "i" and _is_int(value):
        return value
    raise PageTokenError(_GARBLED)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
