"""Stream tokens: a browser follows one job's events without its API key.

A browser's ``EventSource`` cannot send an ``Authorization`` header. So a client that holds
the key asks ``POST /v1/jobs/{id}/stream-token`` and hands the page a token that opens that
job's event stream, and nothing else, for `TTL_S` seconds: ``GET
/v1/jobs/{id}/events?token=...``. The token is checked when the stream opens (a stream open at
its expiry goes on to the job's end; reconnecting after it needs a new token).

A token reads ``<job id>.<expiry, Unix s>.<signature>``: the signature is an HMAC-SHA256 of
the rest with the service's secret, so the service keeps nothing per token. The secret is 32
random bytes a process draws when it starts, or ``CONVEYOR_STREAM_TOKEN_SECRET`` from the
environment (several instances behind a load balancer share it; at least 32 characters).
A token names no tenant and no key; the job's tenant is read from the store.

A token travels in a URL, so it is kept out of the logs: the service never logs it, and the
access log of a uvicorn that serves it (``uvicorn.access``: a host app's, in which the
service is mounted) shows ``token=[redacted]`` (`RedactTokens`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from typing import TYPE_CHECKING

from .. import _clock
from ..errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["SECRET_ENV", "TTL_S", "RedactTokens", "StreamTokens"]

#: How long a stream token opens its job's stream, in seconds.
TTL_S = 600
#: The environment variable a shared secret is read from (else one is drawn per process).
SECRET_ENV = "CONVEYOR_STREAM_TOKEN_SECRET"  # noqa: S105 - a variable's name, not a secret
_TOKEN = re.compile(r"^([0-9a-zA-Z-]{1,64})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})$")
_IN_URL = re.compile(r"([?&]token=)[^&\s\"]*")


class StreamTokens:
    """Mints and checks stream tokens (see the module docstring).

    Args:
        secret: the signing key; at least 32 bytes.
        clock: Unix seconds (`conveyor._clock.wall`, which follows a virtual clock).
        ttl_s: how long a token is good for.
    """

    def __init__(
        self, secret: bytes, *, clock: Callable[[], float] = _clock.wall, ttl_s: int = TTL_S
    ) -> None:
        if len(secret) < 32:
            msg = f"the stream token secret is {len(secret)} bytes: pass at least 32"
            raise ConfigError(msg)
        self._secret = secret
        self._clock = clock
        self.ttl_s = ttl_s

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> StreamTokens:
        """With the secret of ``CONVEYOR_STREAM_TOKEN_SECRET`` if set, else a random one."""
        shared = environ.get(SECRET_ENV)
        if shared is None:
            return cls(secrets.token_bytes(32))
        if len(shared) < 32:
            msg = (
                f"{SECRET_ENV} is {len(shared)} characters: set it to at least 32 random ones"
                " (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
            raise ConfigError(msg)
        return cls(shared.encode())

    def _sign(self, job_id: str, expires_at: int) -> str:
        mac = hmac.new(self._secret, f"{job_id}.{expires_at}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")

    def mint(self, job_id: str) -> tuple[str, int]:
        """A token for `job_id`'s event stream, and when it expires (Unix s)."""
        expires_at = int(self._clock()) + self.ttl_s
        return f"{job_id}.{expires_at}.{self._sign(job_id, expires_at)}", expires_at

    def check(self, token: str, job_id: str) -> str | None:
        """None if `token` opens `job_id`'s stream now, else why not (never the token)."""
        found = _TOKEN.match(token)
        if found is None:
            return "the token is malformed"
        for_job, expiry, signature = found.groups()
        if not hmac.compare_digest(signature, self._sign(for_job, int(expiry))):
            return "the token is not valid (not made by this service)"
        if for_job != job_id:
            return "the token is for another job"
        if int(expiry) <= self._clock():
            return "the token has expired"
        return None


class RedactTokens(logging.Filter):
    """A log filter: ``token=...`` in a record's arguments shows as ``token=[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's string arguments; keep the record."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                _IN_URL.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args
            )
        return True
