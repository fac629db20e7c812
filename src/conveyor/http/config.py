"""What a batch run is told: files, endpoint, limits. Frozen, keyword-only, checked when made."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .._urls import shown_url
from ..errors import ConfigError
from ..limits._api_limits import ApiLimits

__all__ = ["BatchFiles", "BatchLimits", "Endpoint"]

# RFC 9110 token characters: what a header name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _check_header(owner: str, name: object, value: object, *, secret: bool) -> None:
    if not isinstance(name, str) or not _TOKEN.match(name):
        msg = f"{owner}: the header name {name!r} is not valid; use letters, digits and '-'"
        raise ConfigError(msg)
    # A secret's value is never shown, not even in the error about it.
    shown = "its value" if secret else repr(value)
    if not isinstance(value, str):
        msg = f"{owner}: the header {name} has {shown}, which is not a string"
        raise ConfigError(msg)
    if any(c in value for c in "\r\n\0"):
        msg = f"{owner}: the header {name} has a line break or NUL in {shown}; remove it"
        raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True, slots=True)
class Endpoint:
    """Where the requests go, and the headers sent with each.

    Args:
        base_url: prefixed to every relative url (``https://api.openai.com``). When set, a line
            with an absolute url elsewhere is refused, so that the headers go nowhere else.
        url: the url of lines that have none, and of bare JSON bodies (``--url``).
        headers: ``(name, value)`` pairs sent with every request.
        secret_headers: like `headers`, but their values are secrets: never shown in a repr,
            an error, a log or the results (any occurrence is replaced by ``[redacted]``).
    """

    base_url: str | None = None
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    secret_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        base = self.base_url
        if base is not None and (
            not isinstance(base, str) or not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", base)
        ):
            shown = shown_url(base) if isinstance(base, str) else base
            msg = (
                f"Endpoint(base_url={shown!r}): give the API's address with its scheme, like"
                " https://api.openai.com or http://127.0.0.1:8765 (no query string)"
            )
            raise ConfigError(msg)
        if base is not None and shown_url(base) != base:
            # The base URL is named in messages and result lines: no credentials in it.
            msg = (
                f"Endpoint(base_url={shown_url(base)!r}): the address carries credentials"
                " (user:password@); send them as a header instead, e.g."
                " --header-env 'Authorization=ENV_VAR' with the value 'Basic ...'"
            )
            raise ConfigError(msg)
        if self.url is not None and (not isinstance(self.url, str) or not self.url.strip()):
            msg = f"Endpoint(url={self.url!r}): give a path like /v1/chat/completions"
            raise ConfigError(msg)
        for name, value in self.headers:
            _check_header("Endpoint(headers=...)", name, value, secret=False)
        for name, value in self.secret_headers:
            _check_header("Endpoint(secret_headers=...)", name, value, secret=True)

    def all_headers(self) -> dict[str, str]:
        """The headers to send with every request (secret ones included)."""
        return dict(self.headers) | dict(self.secret_headers)

    def secrets(self) -> tuple[str, ...]:
        """The secret values, for redaction."""
        return tuple(value for _, value in self.secret_headers)


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchFiles:
    """The requests file read, the results file written, and whether failed results re-run."""

    input: Path
    output: Path
    retry_failed: bool = False

    def __post_init__(self) -> None:
        for name in ("input", "output"):
            if not isinstance(getattr(self, name), Path):
                msg = f"BatchFiles({name}={getattr(self, name)!r}): pass a pathlib.Path"
                raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchLimits(ApiLimits):
    """How fast the run may go.

    Args:
        concurrency: requests in flight at most (also the HTTP connection pool's size).
        requests_per_minute, tokens_per_minute: the API's limits (None: not limited here; the
            run still slows down when the API answers 429 with Retry-After).
        input_tokens_per_minute, output_tokens_per_minute: separate budgets for the prompt's
            tokens and the answer's (Anthropic's ITPM and OTPM). A request reserves its
            prompt's estimate and its ``max_tokens`` (at most; see `conveyor.Limiter`'s
            ``output_reserve``), and its answer's ``usage`` settles both.
        window_s: the window the API enforces its limits over, when known (OpenAI: about 1 s).
        bucket_s: the API enforces its limits as token buckets refilling continuously, each
            holding this many seconds of its rate (Anthropic: about 1 s). With neither
            `window_s` nor `bucket_s`, the requests are spread evenly over the minute.
        refund_unused_tokens: with a token limit, an answer whose ``usage`` is below the
            estimate gives the difference back to the budget. Off by default: OpenAI's
            limiter charges ``max_tokens`` when the request arrives and does not refund, so a
            refund would spend budget the API no longer has; turn it on for an API that
            counts the tokens really used. A ``usage`` above the estimate is always charged.
    """

    concurrency: int = 50
    refund_unused_tokens: bool = False

    def __post_init__(self) -> None:
        c = self.concurrency
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            msg = f"BatchLimits(concurrency={c!r}): concurrency must be a whole number >= 1"
            raise ConfigError(msg)
        self._check_api_limits()
