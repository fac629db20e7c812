"""What to say when an optional extra (``pip install 'conveyor[NAME]'``) is not installed."""

from __future__ import annotations

__all__ = ["missing_extra"]


def missing_extra(what: str, extra: str, exc: ImportError) -> str:
    """That `what` needs the `extra`, which module `exc` found missing, and the command to fix it.

    >>> print(missing_extra("--config", "service", ImportError(name="starlette")))
    --config needs the service extra (starlette is missing): pip install 'conveyor[service]'
    """
    return (
        f"{what} needs the {extra} extra ({exc.name} is missing): pip install 'conveyor[{extra}]'"
    )
