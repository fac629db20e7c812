"""Cursor pages over a list sorted newest first, as OpenAI's and Anthropic's list APIs page.

Pure: `page` takes the ids in list order and the cursor, and says which slice to show and
whether there is more beyond it. Both batch APIs (and OpenAI's file list) share it, so that
the two interfaces cannot drift apart on what "after" means.

- ``after`` (OpenAI's ``after``, Anthropic's ``after_id``): the `limit` objects just after
  that one, in list order; ``has_more`` when more follow them.
- ``before`` (Anthropic's ``before_id``): the `limit` objects just before that one, the
  closest to it; ``has_more`` when more come before them (the SDK then asks again with
  ``before_id`` = this page's ``first_id``).
- A cursor that is not in the list (deleted, another tenant's, made up) gives an empty page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Page", "page"]


@dataclass(frozen=True, slots=True)
class Page:
    """The slice ``[start:stop]`` of the list to show, and whether more lie beyond it."""

    start: int
    stop: int
    has_more: bool


def page(
    ids: Sequence[str], *, limit: int, after: str | None = None, before: str | None = None
) -> Page:
    """The page of `ids` (list order) after `after`, or before `before`, at most `limit` long.

    >>> page(["e", "d", "c", "b", "a"], limit=2, after="d")
    Page(start=2, stop=4, has_more=True)
    >>> page(["e", "d", "c", "b", "a"], limit=2, before="b")
    Page(start=1, stop=3, has_more=True)
    >>> page(["e", "d"], limit=2, after="zz")
    Page(start=0, stop=0, has_more=False)
    """
    if after is not None and before is not None:
        msg = "pass after or before, not both"
        raise ValueError(msg)
    cursor = after if after is not None else before
    if cursor is None:
        return Page(0, min(limit, len(ids)), len(ids) > limit)
    try:
        at = list(ids).index(cursor)
    except ValueError:
        return Page(0, 0, has_more=False)
    if after is not None:
        start = at + 1
        stop = min(start + limit, len(ids))
        return Page(start, stop, stop < len(ids))
    start = max(at - limit, 0)
    return Page(start, at, start > 0)
