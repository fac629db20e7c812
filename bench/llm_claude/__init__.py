"""The Claude route of bench/llm.py: Messages requests against Anthropic's token buckets.

``python bench/llm.py --route claude [--peers-python /work/peers-venv/bin/python]``

- `work`: the requests, the limits and the ideal (pure);
- `contenders`: the ``anthropic`` SDK baseline and Conveyor's three ways (``conveyor run``,
  ``limit_anthropic``, the Message Batches API), run in this interpreter;
- `peers`: Curator and LiteLLM, run in the peers' own interpreter;
- `run`: the driver, the table and the targets.
"""
