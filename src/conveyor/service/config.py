"""The service's configuration: where jobs live, the limits, and the operator's connections.

Read from a TOML file (``conveyor serve --config conveyor.toml``), every key optional::

    store = "sqlite:///conveyor-jobs.db"
    keys_file = "conveyor-keys.json"
    files_dir = "conveyor-files"
    allowed_hosts = ["jobs.internal"]    # without keys: Host names answered besides loopback

    [cors]                               # browser pages on these origins may call the API
    origins = ["https://app.example.com", "http://localhost:5173"]

    [limits]
    max_body_bytes = 10_485_760          # a request body (413 above)
    max_file_bytes = 1_073_741_824       # an uploaded JSONL file (413 above)
    max_items_per_job = 1_000_000        # 413 above
    max_active_jobs_per_tenant = 100     # queued, running or cancelling (429 above)

    [connections.openai]                 # jobs call it as task "http:openai"
    base_url = "https://api.openai.com"  # the only address the task calls
    auth_env = "OPENAI_API_KEY"          # Authorization: Bearer $OPENAI_API_KEY
    headers_env = { "OpenAI-Organization" = "OPENAI_ORG" }
    requests_per_minute = 500            # a shared limiter, shown on the dashboard's chart
    tokens_per_minute = 200_000
    cache = "openai-cache.db"            # optional: answers stored, repeats not sent again
                                         # (a SQLite file, or "redis://127.0.0.1:6379/0")
    window_s = 1.0                       # optional: the window the API enforces limits over

    [connections.anthropic]              # Message Batches (/v1/messages/batches) run here
    base_url = "https://api.anthropic.com"
    headers_env = { "x-api-key" = "ANTHROPIC_API_KEY" }
    requests_per_minute = 4_000
    input_tokens_per_minute = 2_000_000  # Anthropic's ITPM and OTPM: separate budgets
    output_tokens_per_minute = 400_000
    bucket_s = 1.0                       # optional: token buckets holding 1 s of each rate
                                         # (the default with input or output limits)

Credentials are named by environment variable, read when the service starts, and held only
in the worker's memory: never in the config file, the store, results, events or logs.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from .._urls import shown_url
from ..errors import ConfigError
from ..limits._api_limits import API_RATES, ApiLimits
from ..policy._checks import is_number
from .hosts import check_allowed_host

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..limits.spec import LimiterConfig

__all__ = ["Connection", "Limits", "ServiceConfig", "load_config"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _whole(owner: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{owner}.{name}={value!r}: pass a whole number >= 1"
        raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """What one request, one job and one tenant may use. Over a limit: 413 or 429."""

    max_body_bytes: int = 10 * 1024 * 1024
    max_file_bytes: int = 1024 * 1024 * 1024
    max_items_per_job: int = 1_000_000
    max_active_jobs_per_tenant: int = 100

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_file_bytes",
            "max_items_per_job",
            "max_active_jobs_per_tenant",
        ):
            _whole("limits", name, getattr(self, name))


@dataclass(frozen=True, kw_only=True, slots=True)
class Connection(ApiLimits):
    """An upstream API the built-in ``http`` task may call, as task ``http:<name>``.

    Args:
        name: the connection's name (letters, digits, ``_.-``).
        base_url: ``http(s)://host[:port][/path]``; items may only name URLs under it.
        auth_env: an environment variable whose value is sent as ``Authorization: Bearer``.
        headers_env: more headers, each read from an environment variable.
        requests_per_minute, tokens_per_minute: the API's limits (a shared limiter).
        input_tokens_per_minute, output_tokens_per_minute: separate budgets for the prompts'
            tokens and the answers' (Anthropic's ITPM and OTPM). A request reserves its
            prompt's estimate and at most its ``max_tokens``; its answer's ``usage`` settles
            both (`conveyor.jobs.http_task`).
        concurrency: requests in flight at most, all jobs on this worker together.
        cache: where answers are kept (`conveyor.llm.open_cache`): a SQLite file's path, or a
            ``redis://host:port/db`` URL (``?ttl=SECONDS`` to expire them); a request already
            answered through this connection is not sent again. None: no cache.
        window_s: the window the API enforces its limits over (OpenAI: 1 s), for the limiter.
        bucket_s: the API enforces its limits as token buckets refilling continuously, each
            holding this many seconds of its rate (Anthropic: 1 s). Not with `window_s`. With
            input or output limits and neither shape given, buckets of 1 s (or of one
            request at `requests_per_minute`, if longer): Anthropic's shape (`limiter_bucket_s`).
    """

    name: str
    base_url: str
    auth_env: str | None = None
    headers_env: Mapping[str, str] = field(default_factory=dict)
    concurrency: int | None = None
    cache: str | None = None

    #: A setting left out of the file is not limited (or not known).
    _UNSET: ClassVar[str] = "or leave it out"

    def __post_init__(self) -> None:
        where = self._where()
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            msg = f"connection name {self.name!r}: use letters, digits and _.- (e.g. openai)"
            raise ConfigError(msg)
        base = self.base_url
        parts = urlsplit(base) if isinstance(base, str) else None
        if (
            parts is None
            or parts.scheme not in {"http", "https"}
            or not parts.hostname
            or parts.query
            or parts.fragment
            or shown_url(base) != base
            or ".." in parts.path.split("/")
        ):
            shown = shown_url(base) if isinstance(base, str) else base
            msg = (
                f"{where}.base_url={shown!r}: pass http(s)://host[:port][/path], with no"
                " query, credentials or '..', e.g. https://api.openai.com"
            )
            raise ConfigError(msg)
        for header, var in {"Authorization": self.auth_env, **self.headers_env}.items():
            if var is None:
                continue
            if not _HEADER.match(header) or not isinstance(var, str) or not var:
                msg = f"{where}: header {header!r} from env {var!r}: use Header-Name = 'ENV_VAR'"
                raise ConfigError(msg)
        if self.concurrency is not None:
            _whole(where, "concurrency", self.concurrency)
        if self.cache is not None and (not isinstance(self.cache, str) or not self.cache):
            msg = (
                f"{where}.cache={self.cache!r}: pass the path of a SQLite file or a redis://"
                " URL, or leave it out"
            )
            raise ConfigError(msg)
        self._check_api_limits()
        try:  # what only the limits together can say (a bucket too small for one request)
            self.limiter_config()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def _where(self) -> str:
        return f"connections.{self.name}"

    def _setting(self, name: str, value: object) -> str:
        return f"{self._where()}.{name}={value!r}"

    @property
    def limiter_bucket_s(self) -> float | None:
        """The buckets' seconds the limiter keeps: `bucket_s`, or Anthropic's by default.

        Input or output limits mean Anthropic's token buckets: with no shape given, each holds
        a second of its rate, or the time of one request at `requests_per_minute` if longer
        (a bucket must hold one request), as ``conveyor run --input-tpm`` keeps them.
        """
        if self.bucket_s is not None or self.window_s is not None or not self.splits_tokens:
            return self.bucket_s
        rpm = self.requests_per_minute
        return max(1.0, 60.0 / rpm) if rpm else 1.0

    def limiter_config(self) -> LimiterConfig | None:
        """The connection's shared limiter, named after it; None with no limit to keep."""
        if not any(getattr(self, name) for name in API_RATES) and not self.concurrency:
            return None
        return self.limiter_config_for(self.name, concurrency=self.concurrency)

    @property
    def task_name(self) -> str:
        """The name jobs use to run the http task through this connection."""
        return f"http:{self.name}"

    def headers(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The headers, read from the environment now; `ConfigError` names a missing variable."""
        env = os.environ if environ is None else environ
        wanted: dict[str, str] = dict(self.headers_env)
        if self.auth_env is not None:
            wanted["Authorization"] = self.auth_env
        out: dict[str, str] = {}
        for header, var in wanted.items():
            value = env.get(var)
            if not value:
                msg = (
                    f"connections.{self.name}: the environment variable {var} (for the"
                    f" {header} header) is not set; export it before `conveyor serve`"
                )
                raise ConfigError(msg)
            out[header] = f"Bearer {value}" if header == "Authorization" else value
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class ServiceConfig:
    """Everything ``conveyor serve`` needs besides the address. See the module docstring."""

    store: str = "sqlite:///conveyor-jobs.db"
    keys_file: Path | None = Path("conveyor-keys.json")
    files_dir: Path = Path("conveyor-files")
    limits: Limits = field(default_factory=Limits)
    connections: tuple[Connection, ...] = ()
    #: How often a watched job is read for its event stream, in seconds.
    events_interval_s: float = 0.25
    #: The job list's stream (``/v1/events``) ends after this long; clients reconnect. This
    #: spreads long-lived connections over the servers behind a load balancer.
    list_events_max_s: float = 300.0
    #: How often the service looks for batches past their completion window, in seconds (at
    #: the earliest expiry, when that comes sooner): each is expired whether or not it is read.
    batch_sweep_s: float = 5.0
    #: Calls need an API key for the whole life of the service, even once none is left (set
    #: by ``conveyor serve`` when it listens beyond loopback): revoking the last key, or
    #: deleting the keys file, then refuses every call instead of opening the service.
    require_keys: bool = False
    #: Without API keys, the ``Host`` names answered besides the loopback ones and the address
    #: a request reached (`conveyor.service.hosts`): the name a reverse proxy in front of the
    #: service forwards. Names or addresses, no port; any other ``Host`` is answered 421.
    allowed_hosts: tuple[str, ...] = ()
    #: The origins (``scheme://host[:port]``) whose web pages may call the API from a browser
    #: (CORS); none by default. Never ``*``: list your front end's origins.
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.connections]
        if len(set(names)) != len(names):
            msg = f"connections {names}: each connection needs its own name"
            raise ConfigError(msg)
        t = self.events_interval_s
        if not is_number(t) or not 0.01 <= t <= 10:
            msg = f"events_interval_s={t!r}: pass a number of seconds from 0.01 to 10"
            raise ConfigError(msg)
        t = self.batch_sweep_s
        if not is_number(t) or not 0.01 <= t <= 3600:
            msg = f"batch_sweep_s={t!r}: pass a number of seconds from 0.01 to 3600"
            raise ConfigError(msg)
        hosts = self.allowed_hosts
        if isinstance(hosts, str) or not isinstance(hosts, tuple | list):
            msg = f"allowed_hosts={hosts!r}: pass a list of host names, e.g. ['jobs.internal']"
            raise ConfigError(msg)
        try:
            checked = tuple(check_allowed_host(h, where="allowed_hosts") for h in hosts)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        object.__setattr__(self, "allowed_hosts", checked)
        origins = self.cors_origins
        if isinstance(origins, str) or not isinstance(origins, tuple | list):
            msg = f"cors origins={origins!r}: pass a list, e.g. ['https://app.example.com']"
            raise ConfigError(msg)
        object.__setattr__(self, "cors_origins", tuple(_origin(o) for o in origins))


def _origin(value: object) -> str:
    """A CORS origin as a browser sends it (``scheme://host[:port]``); `ConfigError` else."""
    example = "e.g. https://app.example.com or http://localhost:5173"
    if value == "*":
        msg = (
            "cors origin '*': a wildcard lets every web page call the service with whatever"
            f" key it gets; list your front end's origins instead ({example})"
        )
        raise ConfigError(msg)
    parts = urlsplit(value) if isinstance(value, str) else None
    try:
        port_ok = parts is not None and (parts.port is None or parts.port > 0)
    except ValueError:
        port_ok = False
    if (
        parts is None
        or parts.scheme not in {"http", "https"}
        or not parts.hostname
        or not port_ok
        or parts.username is not None
        or parts.password is not None
        or parts.path
        or parts.query
        or parts.fragment
        or value != f"{parts.scheme}://{parts.netloc}"
    ):
        msg = f"cors origin {value!r}: pass scheme://host[:port], with no path ({example})"
        raise ConfigError(msg)
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        msg = f"[{key}] must be a table"
        raise ConfigError(msg)
    return value


def load_config(path: Path) -> ServiceConfig:
    """Read a TOML file; `ConfigError` names the wrong key and the fix."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"cannot read the config file {str(path)!r}: {exc.strerror}"
        raise ConfigError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"{str(path)!r} is not valid TOML: {exc}"
        raise ConfigError(msg) from exc
    known = {
        "store",
        "keys_file",
        "files_dir",
        "limits",
        "connections",
        "events_interval_s",
        "allowed_hosts",
        "cors",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        msg = (
            f"{str(path)!r}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
        raise ConfigError(msg)
    try:
        limits = Limits(**_table(data, "limits"))
        connections = tuple(
            Connection(name=name, **dict(_table(_table(data, "connections"), name)))
            for name in _table(data, "connections")
        )
    except TypeError as exc:
        msg = f"{str(path)!r}: {exc}; see `conveyor serve --help` for the keys"
        raise ConfigError(msg) from exc
    cors = _table(data, "cors")
    if set(cors) - {"origins"}:
        msg = f"{str(path)!r}: [cors] takes only origins = [...], not {', '.join(sorted(cors))}"
        raise ConfigError(msg)
    base = ServiceConfig()
    keys_file = data.get("keys_file", base.keys_file)
    return ServiceConfig(
        store=str(data.get("store", base.store)),
        keys_file=None if keys_file in {None, ""} else Path(keys_file),
        files_dir=Path(data.get("files_dir", base.files_dir)),
        limits=limits,
        connections=connections,
        events_interval_s=data.get("events_interval_s", base.events_interval_s),
        allowed_hosts=data.get("allowed_hosts", base.allowed_hosts),
        cors_origins=cors.get("origins", ()),
    )
