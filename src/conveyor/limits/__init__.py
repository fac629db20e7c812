"""Limits that belong to an API: shared rate limits, concurrency, pauses and circuit breaking."""
