"""Keeping secrets out of what is written: now `conveyor.wire.redact`, re-exported here."""

from __future__ import annotations

from ..wire.redact import CREDENTIAL_HEADERS, MIN_SECRET, REDACTED, Redactor, without_credentials

__all__ = ["CREDENTIAL_HEADERS", "MIN_SECRET", "REDACTED", "Redactor", "without_credentials"]
