"""The limits options of ``conveyor run``: how fast, in which dimensions, in which shape.

Requests and tokens a minute (``--rpm``, ``--tpm``), or input and output tokens apart
(``--input-tpm``, ``--output-tpm``: Anthropic's ITPM and OTPM), kept over a sliding window
(``--limit-window``, OpenAI's shape) or in token buckets (``--limit-bucket``, Anthropic's).
Split limits mean Anthropic, so they are kept in buckets of one second unless told otherwise:
the shape Anthropic documents ("60 requests a minute may be enforced as one a second").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .arg_types import add_count, duration_s, positive_number

if TYPE_CHECKING:
    import argparse

    from ..http import BatchLimits

__all__ = ["add_limit_arguments", "limits_from_args"]


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the limits group of ``conveyor run``'s options to `parser`."""
    limits = parser.add_argument_group("limits")
    add_count(limits, "--concurrency", default=50, help="requests in flight at most (50)")
    limits.add_argument(
        "--rpm", type=positive_number, metavar="N", help="requests per minute (none)"
    )
    limits.add_argument(
        "--tpm",
        type=positive_number,
        metavar="N",
        help="tokens per minute, prompt and answer together (OpenAI's TPM; none)",
    )
    limits.add_argument(
        "--input-tpm",
        type=positive_number,
        metavar="N",
        help="prompt (input) tokens per minute, a budget of its own (Anthropic's ITPM; none):"
        " a request reserves its prompt's estimate, settled from the answer's usage",
    )
    limits.add_argument(
        "--output-tpm",
        type=positive_number,
        metavar="N",
        help="answer (output) tokens per minute, a budget of its own (Anthropic's OTPM; none):"
        " a request reserves at most its max_tokens, settled from the answer's usage",
    )
    shape = limits.add_mutually_exclusive_group()
    shape.add_argument(
        "--limit-window",
        type=duration_s,
        metavar="DURATION",
        help="the API enforces its limits over a sliding window this long (OpenAI: 1s); no"
        " such window ever admits more than its share",
    )
    shape.add_argument(
        "--limit-bucket",
        type=duration_s,
        metavar="DURATION",
        help="the API enforces its limits as token buckets refilling continuously, each"
        " holding DURATION of its rate (Anthropic: 1s). The default with --input-tpm or"
        " --output-tpm (Anthropic's limits): 1s, or the time of one request at --rpm if"
        " longer; otherwise, with neither shape given, requests are paced evenly",
    )
    limits.add_argument(
        "--refund-unused-tokens",
        action="store_true",
        help=(
            "with --tpm, give back to the budget the tokens an answer's usage shows unused"
            " (for APIs that count tokens used; OpenAI charges max_tokens up front)"
        ),
    )


def limits_from_args(args: argparse.Namespace) -> BatchLimits:
    """The run's limits; the token-bucket shape by default under input or output limits."""
    from ..errors import ConfigError
    from ..http import BatchLimits

    rpm: float | None = args.rpm
    input_tpm: float | None = getattr(args, "input_tpm", None)
    output_tpm: float | None = getattr(args, "output_tpm", None)
    bucket_s: float | None = getattr(args, "limit_bucket", None)
    shape = "--limit-window" if args.limit_window is not None else "--limit-bucket"
    given = args.limit_window if args.limit_window is not None else bucket_s
    if given is not None and not (rpm or args.tpm or input_tpm or output_tpm):
        # A shape with no rate to shape limits nothing: the run would go unpaced into the API.
        msg = (
            f"{shape} {given:g}s says how the API enforces its limits, but no limit is given:"
            " add the API's limits (--rpm N, --tpm N, or --input-tpm N / --output-tpm N), or"
            f" drop {shape}"
        )
        raise ConfigError(msg)
    least = 60.0 / rpm if rpm is not None else 0.0  # a bucket must hold one request
    if bucket_s is None and args.limit_window is None and (input_tpm or output_tpm):
        bucket_s = max(1.0, least)
    elif bucket_s is not None and bucket_s < least - 1e-9:
        msg = (
            f"--limit-bucket {bucket_s:g}s holds {bucket_s / least:.2f} of a request at --rpm"
            f" {rpm:g}: no request could ever start; give --limit-bucket {least:.3g}s or more"
        )
        raise ConfigError(msg)
    return BatchLimits(
        concurrency=args.concurrency,
        requests_per_minute=rpm,
        tokens_per_minute=args.tpm,
        input_tokens_per_minute=input_tpm,
        output_tokens_per_minute=output_tpm,
        window_s=args.limit_window,
        bucket_s=bucket_s,
        refund_unused_tokens=args.refund_unused_tokens,
    )
