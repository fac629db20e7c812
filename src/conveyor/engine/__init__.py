"""The async engine: runs a function over many items with a concurrency cap and retries."""
