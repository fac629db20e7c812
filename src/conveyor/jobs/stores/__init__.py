"""The job stores: `MemoryStore` (the in-memory twin) and `SqliteStore` (the default)."""
