"""Bearer tokens: `--auth-tokens-file` lists `<read|write> <sha256-hex-of-token>` a line.

Only digests are stored, so the file is no secret worth stealing; a presented token is
hashed and compared with every stored digest in constant time, and is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from service.api.errors import AuthenticationError, PermissionDeniedError

log = logging.getLogger("users.auth")

READ = "read"
WRITE = "write"
ROLES = (READ, WRITE)
_DIGEST_HEX_LENGTH = 64
_METADATA_KEY = "authorization"
_SCHEME = "bearer "


class TokensFileError(ValueError):
    """The tokens file cannot be used; the message names the file and line, never a token."""


@dataclass(frozen=True, slots=True)
class Credential:
    role: str
    digest: bytes


def digest_of(token: str) -> str:
    """The hex digest to put in the tokens file for `token`."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def load_tokens(path: str) -> tuple[Credential, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TokensFileError(f"cannot read the tokens file {path}: {error}") from None
    credentials = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if (
            len(fields) != 2
            or fields[0] not in ROLES
            or len(fields[1]) != _DIGEST_HEX_LENGTH
            or not _is_hex(fields[1])
        ):
            raise TokensFileError(
                f"{path}:{number}: expected '<read|write> <sha256-hex-of-token>' "
                "(64 hex digits, e.g. from `printf %s TOKEN | sha256sum`)"
            )
        credentials.append(Credential(role=fields[0], digest=bytes.fromhex(fields[1])))
    return tuple(credentials)


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


class TokenAuthenticator:
    def __init__(self, path: str) -> None:
        self._path = path
        self._credentials = load_tokens(path)
        if not self._credentials:
            log.warning("%s lists no tokens: every call will be UNAUTHENTICATED", path)

    def reload(self) -> None:
        """Re-reads the file (SIGHUP); a file that cannot be used keeps the tokens in force."""
        try:
            credentials = load_tokens(self._path)
        except TokensFileError as error:
            log.error("kept the previous tokens: %s", error)
            return
        self._credentials = credentials
        log.info("re-read %s: %d tokens", self._path, len(credentials))

    def check(self, metadata: Iterable[tuple[str, str | bytes]] | None, method: str,
              writes: bool) -> None:  # fmt: skip
        token = _bearer_token(metadata)
        if token is None:
            raise AuthenticationError("this call carries no bearer token")
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        # Every stored digest is compared, matching or not, so timing tells nothing.
        roles = {c.role for c in self._credentials if hmac.compare_digest(presented, c.digest)}
        if not roles:
            raise AuthenticationError("the bearer token is not valid")
        if writes and WRITE not in roles:
            raise PermissionDeniedError(method)


def _bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == _METADATA_KEY and isinstance(value, str):
            if value[: len(_SCHEME)].lower() == _SCHEME:
                return value[len(_SCHEME) :].strip() or None
            return None
    return None
