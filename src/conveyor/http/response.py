"""An answer as it is kept: now `conveyor.wire.response`, re-exported here (same objects)."""

from __future__ import annotations

from ..wire.response import KEPT_HEADERS, Response, decode_body, kept_headers

__all__ = ["KEPT_HEADERS", "Response", "decode_body", "kept_headers"]
