"""The options of ``conveyor run``: parsing, checking, and turning them into library configuration.

Kept apart from the command (`run.py`) so that each stays small; like the mock API's
``cli_args``, `add_arguments` fills any parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .._flags import add_renamed
from .._reasons import FINISH_REASONS, STOP_REASONS
from .arg_types import add_count, add_header_arguments, count, duration_s, positive_number, timeout
from .run_limits import add_limit_arguments, limits_from_args
from .subcommands import Action

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from ..http import BatchFiles, BatchLimits, Endpoint
    from ..llm.hooks import LlmOptions
    from ..policy.retry import Retry

__all__ = ["DESCRIPTION", "EPILOG", "RunOptions", "add_arguments", "options_from_args"]

DESCRIPTION = """\
Send every request of a JSONL file (the OpenAI Batch API's line format: custom_id, method,
url, body; or Anthropic's Message Batches format: custom_id, params, sent to /v1/messages) to
an HTTP API, as fast as --concurrency, --rpm and the token limits allow and never faster;
write one result line per request to the output as each settles. Run the same command again
to resume: requests already in the output are skipped."""

EPILOG = """\
exit status: 0 every request succeeded; 1 the run finished and some failed (see their
"error" in the output; --retry-failed sends them again, once any invalid line is fixed);
2 refused before sending (bad option or file), or stopped because a result could not be
written (what was written is kept: fix the cause and run again to resume); 3 stopped
admitting before the end: --max-cost reached, or the API's quota or spend limit exhausted
(the rest stays pending: run again to resume); 130 interrupted by Ctrl-C, 143 by SIGTERM
(in-flight requests are cancelled, not written, and run on resume).

durations (--timeout, --limit-window, --progress-interval...) are written 30s, 500ms, 2m or
in seconds. --attempts counts every try, the first included (--retries N, its old form, is
--attempts N+1).

request lines may also carry "headers" (sent with that request only) and "cost" (its tokens,
instead of the estimate); a line without "custom_id" is named line-N after its number.

requests to Anthropic (/v1/messages...) carry "anthropic-version: 2023-06-01" unless --header
or the line's own headers name another.

examples:
  export OPENAI_AUTH="Bearer $OPENAI_API_KEY"
  conveyor run requests.jsonl -o results.jsonl --base-url https://api.openai.com \\
      --header-env Authorization=OPENAI_AUTH --rpm 500 --tpm 200000 --limit-window 1s
  conveyor run claude.jsonl -o results.jsonl --base-url https://api.anthropic.com \\
      --header-env x-api-key=ANTHROPIC_API_KEY --rpm 50 --input-tpm 50000 --output-tpm 10000"""

#: ``conveyor run`` as ``conveyor --help`` lists it, and its own help.
RUN = Action(
    "run",
    "send a JSONL file of HTTP requests within rate limits; resume where it stopped",
    DESCRIPTION,
    EPILOG,
)

# The reasons --require-finish-reason takes: OpenAI's and Claude's, as `AnswerCheck` knows them.
_REASONS = FINISH_REASONS + STOP_REASONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``conveyor run`` to `parser`."""
    parser.add_argument("input", metavar="REQUESTS.jsonl", help="the requests, one JSON per line")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="RESULTS.jsonl",
        help="the results, one JSON per line, appended (read back to resume)",
    )
    where = parser.add_argument_group("where the requests go")
    where.add_argument("--base-url", metavar="URL", help="prefixed to relative urls")
    where.add_argument(
        "--url", metavar="PATH", help="the url of lines without one; lines may then be bare bodies"
    )
    add_header_arguments(
        where,
        header_help="a header for every request (repeatable); not for credentials"
        " (Authorization, x-api-key...), which go with --header-env",
        env_help="a header whose value is read from an environment variable; kept out of"
        " every output and message (repeatable)",
    )
    add_limit_arguments(parser)
    retries = parser.add_argument_group("retries")
    add_count(
        retries,
        "--attempts",
        default=6,
        help="tries per request in all, the first included, as jobs count them (6: 5 retries)",
    )
    # The old way to say it counted retries only: --retries N is --attempts N+1.
    add_renamed(
        retries, "--retries", "--attempts", dest="attempts", type=lambda t: count(t, least=0) + 1
    )
    retries.add_argument(
        "--timeout",
        type=timeout,
        default=600.0,
        metavar="DURATION|auto",
        help="time limit of one attempt, e.g. 60s; auto: 4 x p95 of recent ones (600s)",
    )
    retries.add_argument(
        "--retry-failed", action="store_true", help="send again the requests whose results failed"
    )
    llm = parser.add_argument_group("LLM answers, cache and spend")
    llm.add_argument(
        "--require-finish-reason",
        action="append",
        default=[],
        choices=_REASONS,
        metavar="REASON",
        help="an answer must end with this reason (repeatable): OpenAI's finish_reason (stop,"
        " length, content_filter, tool_calls, function_call) or Claude's stop_reason"
        " (end_turn, max_tokens, stop_sequence, tool_use, pause_turn, refusal,"
        " model_context_window_exceeded), e.g. stop or end_turn; otherwise it fails as"
        " answer_length / answer_content_filter / answer_refusal / answer_finish_reason and"
        " is retried. A file whose requests go to an API none of the reasons belong to is"
        " refused before anything is sent",
    )
    llm.add_argument(
        "--require-json",
        action="store_true",
        help="an answer's content (OpenAI: each choice's message; Claude: the text blocks,"
        " joined) must parse as JSON; otherwise it fails as answer_not_json and is retried",
    )
    llm.add_argument(
        "--cache",
        metavar="PATH|URL",
        help="where answers are kept: a SQLite file, or Redis as redis://HOST:PORT/DB"
        " (?ttl=SECONDS to expire them); a request answered there before is not sent again"
        " (errors are never stored)",
    )
    llm.add_argument(
        "--max-cost",
        type=positive_number,
        metavar="USD",
        help="stop starting requests before the spend could pass this many US dollars; the"
        " rest stays pending (run again to resume)",
    )
    llm.add_argument(
        "--prices",
        type=Path,
        metavar="FILE",
        help="a price table (TOML, the format of conveyor/llm/prices.toml) instead of the"
        " default one",
    )
    show = parser.add_argument_group("output")
    show.add_argument(
        "--summary-json", type=Path, metavar="PATH", help="also write the summary as JSON"
    )
    show.add_argument(
        "--progress",
        choices=("auto", "rich", "plain", "none"),
        default="auto",
        help="live bar on a terminal (rich), a line per interval (plain), or none (auto);"
        " with --input-tpm or --output-tpm it shows each rate against its limit: input"
        " tokens as estimated when sent (replaced by the answer's usage when it comes, so"
        " marked ~), output tokens as the answers report them",
    )
    show.add_argument(
        "--progress-interval",
        type=duration_s,
        default=2.0,
        metavar="DURATION",
        help="time between plain progress lines (2s)",
    )


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Everything ``conveyor run`` was told, as library configuration."""

    files: BatchFiles
    endpoint: Endpoint
    limits: BatchLimits
    retry: Retry
    progress: Literal["auto", "rich", "plain", "none"] = "auto"
    progress_interval_s: float = 2.0
    summary_json: Path | None = None
    llm: LlmOptions | None = None


def options_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> RunOptions:
    """Build the run's configuration; `ConfigError` names a wrong option and the fix."""
    from ..errors import ConfigError
    from ..http import BatchFiles, Endpoint
    from ..http.redact import CREDENTIAL_HEADERS
    from ..policy.retry import Retry

    for name, _ in args.header:
        if name.lower() in CREDENTIAL_HEADERS:
            # Its value would be in the shell's history and `ps`, and not redacted if echoed.
            msg = (
                f"--header {name}: this header carries a credential, which --header would"
                " leave in your shell history and process list and not redact from the"
                f" results; pass it with --header-env {name}=ENV_VAR (e.g."
                f" --header-env {name}={_example_variable(name)})"
            )
            raise ConfigError(msg)
    secret: list[tuple[str, str]] = []
    for name, variable in args.header_env:
        value = environ.get(variable)
        if not value:
            state = "is empty" if value == "" else "is not set"
            msg = (
                f"--header-env {name}={variable}: the environment variable {variable} {state};"
                f" set it first, e.g. export {variable}='...'"
            )
            raise ConfigError(msg)
        secret.append((name, value))
    return RunOptions(
        files=BatchFiles(
            input=Path(args.input), output=Path(args.output), retry_failed=args.retry_failed
        ),
        endpoint=Endpoint(
            base_url=args.base_url,
            url=args.url,
            headers=tuple(args.header),
            secret_headers=tuple(secret),
        ),
        limits=limits_from_args(args),
        retry=Retry(attempts=args.attempts, timeout_s=args.timeout),
        progress=args.progress,
        progress_interval_s=args.progress_interval,
        summary_json=args.summary_json,
        llm=_llm_options(args),
    )


def _example_variable(header: str) -> str:
    """The environment variable the docs' examples keep a credential header's value in."""
    return "ANTHROPIC_API_KEY" if header.lower() == "x-api-key" else "OPENAI_AUTH"


def _llm_options(args: argparse.Namespace) -> LlmOptions:
    from ..llm.hooks import LlmOptions
    from ..llm.pricing import PriceTable
    from ..llm.validate import AnswerCheck

    reasons = getattr(args, "require_finish_reason", [])
    check = None
    if reasons or getattr(args, "require_json", False):
        check = AnswerCheck(
            finish_reasons=frozenset(reasons) if reasons else None, json=args.require_json
        )
    prices = getattr(args, "prices", None)
    return LlmOptions(
        validate=check,
        cache=getattr(args, "cache", None),
        prices=PriceTable.load(prices) if prices is not None else None,
        max_cost_usd=getattr(args, "max_cost", None),
    )
