"""Math word problems: greedy generation, then answer extraction (see ``extract``).

``kind="number"`` (GSM8K, SVAMP, MAWPS): last number after removing commas, correct within 1e-3.
``kind="letter"`` (AQuA): first stand-alone letter A-E.
"""

from __future__ import annotations

from torch import nn

from shears.evaluate.extract import (
    extract_letter,
    extract_number,
    numbers_match,
    parse_label_number,
)
from shears.evaluate.generate import generate_answers
from shears.evaluate.parallel import SINGLE, DataParallel

KINDS = ("number", "letter")


def score_math_output(output: str, label: str | float, kind: str = "number") -> dict:
    """``{"extracted", "correct"}`` for one generated answer against its label."""
    if kind == "number":
        pred = extract_number(output)
        return {"extracted": pred, "correct": numbers_match(pred, parse_label_number(label))}
    if kind == "letter":
        pred = extract_letter(output)
        gold = str(label).strip().upper()[:1]
        return {"extracted": pred, "correct": pred is not None and pred == gold}
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def math_accuracy(
    model: nn.Module,
    tokenizer,
    examples: list[dict],
    style: str = "alpaca",
    batch_size: int = 16,
    max_new_tokens: int = 256,
    kind: str = "number",
    progress: bool = False,
    parallel: DataParallel = SINGLE,
) -> tuple[float, list[dict]]:
    """Accuracy of greedy answers to ``examples`` (``instruction``, optional ``input``, ``answer``).

    Returns ``(accuracy, records)``; each record holds ``output``, ``extracted``, ``correct``.
    ``parallel``: the processes that share the generation (every one gets all records).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    outputs = generate_answers(
        model, tokenizer, examples, style, batch_size, max_new_tokens, progress, parallel
    )
    records = [
        {"output": out, **score_math_output(out, e["answer"], kind)}
        for e, out in zip(examples, outputs, strict=True)
    ]
    acc = sum(r["correct"] for r in records) / max(1, len(records))
    return acc, records
