"""How close the token estimate (no tokenizer, no download) comes to real token counts.

Conveyor charges a chat request ``ceil(characters of the messages / 4) + max_tokens`` before
it is sent (`conveyor.http.estimate_tokens`). Here the prompt part of that estimate is set
against the count of OpenAI's own encoding for GPT-4o (``o200k_base``) on realistic prompts,
plus OpenAI's documented framing of a chat (3 tokens per message, 3 to prime the answer).

The reference tokenizer is the ``bpe-openai`` package (a Rust BPE with the encodings built
in, so nothing is downloaded at run time; ``tiktoken`` would download its encoding file on
first use, which this machine cannot). The mock API counts tokens with the same characters / 4
rule as the estimate, so against the mock the estimate is exact by construction: that says
nothing about real APIs, hence this comparison.

Run it with ``python bench/token_estimate.py`` (needs ``pip install bpe-openai``).
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120 - before any import
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # noqa: PTH100

import math

from conveyor.http import estimate_tokens

EMAIL = (
    "Hi team,\n\nYour order #A-20931 has shipped with DHL Express. Tracking number:"
    " 1Z999AA10123456784. Expected delivery: Thursday, 14 March, between 09:00 and 12:00."
    " If nobody is home the parcel goes to the nearest service point (Bahnhofstr. 12).\n\n"
    "Kind regards,\nCustomer Care"
)
PROMPTS: dict[str, list[dict[str, str]]] = {
    "tracking number from an email": [
        {"role": "system", "content": "Extract the tracking number. Answer with JSON only."},
        {"role": "user", "content": EMAIL},
    ],
    "support ticket triage": [
        {
            "role": "system",
            "content": "You classify support tickets into billing, bug, feature or other, and"
            " rate urgency from 1 to 5. Reply as JSON with keys category and urgency.",
        },
        {
            "role": "user",
            "content": "Since this morning the export button on the reports page does nothing"
            " in Firefox 124; Chrome works. We need the quarterly export for the board meeting"
            " tomorrow at 9, please help!",
        },
    ],
    "summarise an article": [
        {
            "role": "user",
            "content": "Summarise in three bullet points:\n\n"
            + " ".join(
                [
                    (
                        "The city council approved a plan on Tuesday to convert two downtown"
                        " parking garages into mixed-use buildings with 240 apartments, a third"
                        " of them priced below market rate. Supporters said the change would"
                        " bring residents back to"
                        " a district that empties after office hours; opponents worried about"
                        " shoppers who drive in from the suburbs. Construction is expected to begin"
                        " next spring and take about two years."
                    )
                ]
                * 4
            ),
        },
    ],
    "code review": [
        {"role": "system", "content": "You are a careful Python reviewer."},
        {
            "role": "user",
            "content": "Review this function:\n```python\ndef mean(xs):\n    total = 0\n"
            "    for x in xs:\n        total += x\n    return total / len(xs)\n```\n"
            "What happens with an empty list, and how would you fix it?",
        },
    ],
    "JSON record to normalise": [
        {
            "role": "user",
            "content": '{"customer_id": 88231, "name": "  ACME gmbh ", "vat": "de 123 456 789",'
            ' "contacts": [{"email": "Billing@Acme.example", "phone": "+49 (30) 1234-567"}],'
            ' "created": "2024-03-01T10:22:00Z"} -- normalise names, VAT and phone.',
        },
    ],
    "German customer email": [
        {
            "role": "user",
            "content": "Sehr geehrte Damen und Herren, leider ist meine Bestellung vom 3. März"
            " noch nicht angekommen. Können Sie mir bitte die Sendungsnummer mitteilen? Mit"
            " freundlichen Grüßen, Jürgen Müller",
        },
    ],
    "Chinese product question": [
        {
            "role": "user",
            "content": "请问这款耳机支持主动降噪吗\uff1f电池续航大约多少小时\uff1f"
            "可以连接两台设备吗\uff1f",
        },
    ],
}


def framed_tokens(encode: object, messages: list[dict[str, str]]) -> int:
    """OpenAI's count of a chat prompt: content tokens, 3 per message, 3 for the reply."""
    count = 3
    for message in messages:
        count += 3 + len(encode(message["content"]))  # type: ignore[operator]
    return count


def main() -> int:
    try:
        import bpe_openai  # type: ignore[import-untyped]  # noqa: PLC0415 - optional
    except ImportError:
        print("bpe-openai is not installed: pip install bpe-openai (no download at run time)")
        return 1
    encoding = bpe_openai.get_encoding("o200k_base")
    print(f"{'prompt':<32} {'estimate':>8} {'o200k':>6} {'est/real':>8}")
    ratios = []
    for name, messages in PROMPTS.items():
        estimate = estimate_tokens({"messages": messages, "max_tokens": 0}, None)
        real = framed_tokens(encoding.encode, messages)
        ratios.append(estimate / real)
        print(f"{name:<32} {estimate:>8} {real:>6} {estimate / real:>8.2f}")
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"geometric mean estimate/real: {geo:.2f}; range {min(ratios):.2f}-{max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
