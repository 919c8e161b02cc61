"""Answer extraction and scoring of generated text (pure string functions, no model).

- Math (GSM8K / SVAMP / MAWPS, LLM-Adapters): remove commas, take the **last** number matching
  ``-?\\d+\\.?\\d*``, correct when within 1e-3 of the label.
- AQuA-style letters: the first capital letter A-E standing alone in the output.
- Answer words (LLM-Adapters commonsense: ``true``/``false``, ``solution1``, ``answer3``...): the
  first allowed word found in the output.
"""

from __future__ import annotations

import math
import re

NUMBER_RE = re.compile(r"-?\d+\.?\d*")
LETTER_RE = re.compile(r"(?<![A-Za-z])([A-E])(?![A-Za-z])")
ALPACA_STOP = "\n### "  # the Alpaca template's next section: a model that goes on is rambling


def clean_output(text: str, style: str = "alpaca") -> str:
    """Cut generated text at the start of a new Alpaca section (``### Instruction:``...)."""
    if style == "alpaca":
        cut = text.find(ALPACA_STOP)
        if cut >= 0:
            text = text[:cut]
        if text.startswith("### "):
            text = ""
    return text.strip()


def extract_number(text: str) -> float | None:
    """The last number in ``text`` after removing commas (``1,234`` -> 1234), or None.

    ``"-3.5 apples"`` -> -3.5; ``"costs $12."`` -> 12.0 (a trailing dot is allowed by the
    pattern); ``"no number"`` -> None.
    """
    matches = NUMBER_RE.findall(text.replace(",", ""))
    if not matches:
        return None
    try:
        value = float(matches[-1])
    except ValueError:  # pragma: no cover - the pattern only yields floats
        return None
    return value if math.isfinite(value) else None


def parse_label_number(label: str | float | int) -> float | None:
    """A math label as a float: plain numbers, ``1,234``, or text ending in ``#### 42``."""
    if isinstance(label, (int, float)) and not isinstance(label, bool):
        return float(label)
    text = str(label)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    return extract_number(text)


def numbers_match(pred: float | None, label: float | None, tol: float = 1e-3) -> bool:
    """True when both exist and ``|pred - label| < tol`` (LLM-Adapters' 0.001)."""
    return pred is not None and label is not None and abs(pred - label) < tol


def extract_letter(text: str) -> str | None:
    """The first stand-alone capital A-E in ``text`` (AQuA), or None."""
    m = LETTER_RE.search(text)
    return m.group(1) if m else None


def extract_answer_word(text: str, words: list[str]) -> str | None:
    """The allowed answer word appearing first in ``text`` (case-insensitive, whole word).

    Longer words win ties at the same position (``answer10`` over ``answer1``). Returns the word
    as given in ``words``.
    """
    best: tuple[int, int, str] | None = None
    lower = text.lower()
    for w in words:
        m = re.search(r"(?<![\w])" + re.escape(w.lower()) + r"(?![\w])", lower)
        if m and (best is None or (m.start(), -len(w)) < (best[0], best[1])):
            best = (m.start(), -len(w), w)
    return best[2] if best else None
