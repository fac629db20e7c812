"""`ApiLimits`: an API's per-minute limits and their shape, as a run or a connection is told them.

`conveyor.http.BatchLimits` (``conveyor run``) and `conveyor.service.Connection` (a TOML
connection) both take these six settings; they are declared, checked and turned into a
`LimiterConfig` here, once. Each owner names its settings its own way in errors
(``BatchLimits(bucket_s=0)``, ``connections.openai.bucket_s=0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..errors import ConfigError
from ..policy._checks import is_positive, is_seconds_in
from .config import collect_rates
from .spec import LimiterConfig, check_one_shape

__all__ = ["API_RATES", "ApiLimits"]

#: The per-minute limits, each a rate of the limiter (named as `Limiter`'s shortcuts are).
API_RATES = (
    "requests_per_minute",
    "tokens_per_minute",
    "input_tokens_per_minute",
    "output_tokens_per_minute",
)
#: The two shapes an API may enforce them in; the longest either may be.
_SHAPES = ("window_s", "bucket_s")
_MOST_S = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiLimits:
    """An API's limits: requests and tokens a minute, over a window or in token buckets.

    Args:
        requests_per_minute, tokens_per_minute: the API's limits (None: not limited).
        input_tokens_per_minute, output_tokens_per_minute: separate budgets for the prompts'
            tokens and the answers' (Anthropic's ITPM and OTPM).
        window_s: the window the API enforces its limits over, when known (OpenAI: about 1 s).
        bucket_s: the API enforces its limits as token buckets refilling continuously, each
            holding this many seconds of its rate (Anthropic: about 1 s). Not with `window_s`.
    """

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    input_tokens_per_minute: float | None = None
    output_tokens_per_minute: float | None = None
    window_s: float | None = None
    bucket_s: float | None = None

    #: How an error says to give no value.
    _UNSET: ClassVar[str] = "or None"

    def _where(self) -> str:
        """Who the errors name: the class (a connection: ``connections.<name>``)."""
        return type(self).__name__

    def _setting(self, name: str, value: object) -> str:
        """How an error names a setting and its value: ``BatchLimits(bucket_s=0)``."""
        return f"{self._where()}({name}={value!r})"

    def _check_api_limits(self) -> None:
        """Check the rates and the shape; `ConfigError` names the setting and the fix."""
        for name in API_RATES:
            value = getattr(self, name)
            if value is not None and not is_positive(value):
                msg = f"{self._setting(name, value)}: pass a number > 0, {self._UNSET}"
                raise ConfigError(msg)
        for name in _SHAPES:
            value = getattr(self, name)
            if value is not None and not is_seconds_in(value, _MOST_S):
                msg = (
                    f"{self._setting(name, value)}: pass seconds > 0 and at most 60 (a minute,"
                    f" the period of the limits), {self._UNSET}"
                )
                raise ConfigError(msg)
        check_one_shape(self._where(), self.window_s, self.bucket_s)

    @property
    def splits_tokens(self) -> bool:
        """Whether input and output tokens are limited apart (a request's cost is split)."""
        return self.input_tokens_per_minute is not None or self.output_tokens_per_minute is not None

    @property
    def limiter_bucket_s(self) -> float | None:
        """The buckets' seconds the limiter keeps: `bucket_s`."""
        return self.bucket_s

    def limiter_config_for(self, name: str, *, concurrency: int | None = None) -> LimiterConfig:
        """The `LimiterConfig` of a limiter named `name` keeping these limits."""
        rates = collect_rates(name, (), **{rate: getattr(self, rate) for rate in API_RATES})
        return LimiterConfig(
            name=name,
            rates=tuple(rates),
            concurrency=concurrency,
            window_s=self.window_s,
            bucket_s=self.limiter_bucket_s,
        )
