"""Pure policy: decisions over plain values. No asyncio, no I/O, no clock reads.

Every function here takes "now" and any randomness as arguments, so it is tested with plain
numbers and Hypothesis properties, and the async engine only does the waiting.
"""
