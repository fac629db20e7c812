"""API keys: each belongs to one tenant; only their SHA-256 is stored.

A key reads ``cvy_<id>_<secret>``: `id` (8 hex digits) names it in listings and revocation;
`secret` is 32 random bytes. The keys file (JSON) holds, per key, its id, tenant, name,
creation time and the SHA-256 of the whole key, never the key itself: ``conveyor keys add``
prints the key once. A fast hash is enough because the secret is random (256 bits), not a
password: nothing to guess from a leaked file, and no slow hash on every request.

The service re-reads the file when it changes (checked at most once a second), so a key added
or revoked with ``conveyor keys`` takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .._json import BadJSON, loads
from ..errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["ApiKey", "KeyRing", "add_key", "read_keys", "revoke_key"]

TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PREFIX = "cvy_"
logger = logging.getLogger("conveyor.service")


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiKey:
    """A key as stored: no secret, only its hash."""

    id: str
    tenant: str
    name: str
    sha256: str
    created_at: float


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def read_keys(path: Path) -> list[ApiKey]:
    """The keys in the file (none if it does not exist)."""
    try:
        data = loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except OSError as exc:
        msg = f"cannot read the keys file {str(path)!r}: {exc.strerror}; fix or remove it"
        raise ConfigError(msg) from exc
    except BadJSON as exc:
        msg = f"the keys file {str(path)!r} {exc.problem}; fix or remove it"
        raise ConfigError(msg) from exc
    try:
        return [ApiKey(**entry) for entry in data["keys"]]
    except (KeyError, TypeError) as exc:
        msg = f"{str(path)!r} is not a Conveyor keys file ({exc}); pass another --keys-file"
        raise ConfigError(msg) from exc


def _write(path: Path, keys: list[ApiKey]) -> None:
    text = json.dumps({"keys": [asdict(k) for k in keys]}, indent=2) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    # Owner-only: the hashes are not secrets, but nobody else needs to read them.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(path)


def add_key(
    path: Path, *, tenant: str, name: str = "", now: float | None = None
) -> tuple[ApiKey, str]:
    """Create a key for `tenant`; return it as stored and the key itself (shown once)."""
    if not isinstance(tenant, str) or not TENANT.match(tenant):
        msg = f"tenant {tenant!r}: use 1-64 letters, digits and _.- (e.g. acme)"
        raise ConfigError(msg)
    keys = read_keys(path)
    key_id = secrets.token_hex(4)
    while any(k.id == key_id for k in keys):  # pragma: no cover - 1 in 4 billion
        key_id = secrets.token_hex(4)
    secret = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKey(
        id=key_id,
        tenant=tenant,
        name=name,
        sha256=_digest(secret),
        created_at=time.time() if now is None else now,
    )
    _write(path, [*keys, record])
    return record, secret


def revoke_key(path: Path, key_id: str) -> ApiKey:
    """Remove the key `key_id`; return it. `ConfigError` if there is none."""
    keys = read_keys(path)
    found = [k for k in keys if k.id == key_id]
    if not found:
        msg = f"no key {key_id!r} in {str(path)!r}: `conveyor keys ls` lists the ids"
        raise ConfigError(msg)
    _write(path, [k for k in keys if k.id != key_id])
    return found[0]


class KeyRing:
    """The keys the service accepts: a key's hash to its tenant, reloaded when the file changes.

    Fails closed: a keys file that becomes unreadable keeps the last good set of keys (the
    error is logged), and with `required` (the service listens beyond loopback) having no key
    never opens the service to everyone, however the file changed since the start.

    Args:
        path: the keys file; ``None``: no keys (the service then runs on loopback only).
        clock: monotonic seconds, for the reload check.
        required: keys are needed for the whole life of the service, even if none is left.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        required: bool = False,
    ) -> None:
        self._path = path
        self._clock = clock
        self.required = required
        self._by_hash: dict[str, str] = {}
        self._mtime: float | None = None
        self._checked_at = -1e18
        #: False while the file is unreadable and no good key was read before it broke.
        self._loaded = False
        self._starting = True
        self._load()
        self._starting = False

    def _load(self) -> None:
        if self._path is None:
            self._loaded = True
            return
        try:
            mtime = self._path.stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            self._by_hash, self._mtime, self._loaded = {}, None, True
            return
        except OSError as exc:
            self._keep_last(str(exc))
            return
        if mtime == self._mtime:
            return
        try:
            keys = read_keys(self._path)
        except ConfigError as exc:
            if self._starting:
                raise  # at start: refuse to serve rather than guess
            self._mtime = mtime  # read again only once the file changes
            self._keep_last(str(exc))
            return
        self._by_hash = {k.sha256: k.tenant for k in keys}
        self._mtime = mtime
        self._loaded = True

    def _keep_last(self, error: str) -> None:
        # Fail closed: with good keys read before, keep them; with none (the file did not
        # exist, so no keys, and now it is there but unreadable), refuse every call.
        if self._by_hash:
            kept = f"keeping the {len(self._by_hash)} key(s) read before"
        else:
            self._loaded = False
            kept = "no key was ever read: every call is refused (503) until it is fixed"
        logger.error("conveyor service: the keys file is unusable (%s); %s", error, kept)

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._checked_at >= 1.0:
            self._checked_at = now
            self._load()

    @property
    def enabled(self) -> bool:
        """Whether calls need a key (keys are configured, required, or unreadable)."""
        self._refresh()
        return bool(self._by_hash) or self.required or not self._loaded

    @property
    def unavailable(self) -> bool:
        """Whether the keys file is unreadable and no good key is known: refuse every call."""
        self._refresh()
        return not self._loaded

    @property
    def empty(self) -> bool:
        """Whether no key is configured now."""
        self._refresh()
        return not self._by_hash

    def tenant_of(self, key: str) -> str | None:
        """The tenant of `key`, or ``None`` if it is not a current key."""
        self._refresh()
        if not key.startswith(_PREFIX) or len(key) > 200:
            return None
        return self._by_hash.get(_digest(key))
