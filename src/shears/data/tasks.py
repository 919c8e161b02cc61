"""Instruction records and reasoning-gym problems (read through :mod:`shears.data.sources`).

An instruction record is a plain dict with the keys ``instruction``, ``input``, ``output`` (the
target text for training, may be empty for test-only data) and ``answer`` (the label used for
scoring, may be empty), plus ``template`` where the source has one (for splitting).
"""

from __future__ import annotations

import random
from typing import Any

from shears.errors import ShearsError

SPLITS = ("train", "validation", "test")


def _example(
    instruction: str, input: str = "", output: str = "", answer: str = "", **extra: Any
) -> dict:  # noqa: A002
    return {"instruction": instruction, "input": input, "output": output, "answer": answer, **extra}


def instruction_record(r: dict, i: int, require: tuple[str, ...], where: str) -> dict:
    """Record ``i`` of ``where`` as an instruction record (other fields kept); a ShearsError when
    it lacks one of the ``require`` fields."""
    for key in require:
        if key not in r or r[key] in (None, ""):
            raise ShearsError(
                f"{where}: record {i} has no {key!r} field; records need {', '.join(require)} "
                f"(found: {', '.join(sorted(r))})"
            )
    extra = {k: v for k, v in r.items() if k not in ("instruction", "input", "output", "answer")}
    return _example(
        str(r.get("instruction", "")),
        str(r.get("input", "") or ""),
        str(r.get("output", "") or ""),
        str(r.get("answer", "") or ""),
        **extra,
    )


# ---------------------------------------------------------------------------- reasoning-gym


# Training target of reasoning-gym items without a worked solution: f"{ANSWER_PREFIX} {answer}."
ANSWER_PREFIX = "The answer is"


def _gsm_answer_text(entry: dict) -> str:
    cot = entry.get("metadata", {}).get("answer_cot")
    if cot:
        return cot.strip()
    return f"{ANSWER_PREFIX} {entry['answer']}."


def parse_generator(spec: str) -> tuple[str, dict[str, Any]]:
    """``chain_sum?max_terms=3&max_digits=2`` -> ``("chain_sum", {"max_terms": 3, "max_digits": 2})``.

    Values are parsed as YAML scalars/lists (``operators=[+,-]``); they are passed to the
    generator's config, so a misspelt key is reported by reasoning-gym.
    """
    import yaml

    name, _, query = spec.partition("?")
    kwargs: dict[str, Any] = {}
    for part in filter(None, query.split("&")):
        key, eq, raw = part.partition("=")
        if not eq or not key:
            raise ShearsError(f"generator option {part!r} in {spec!r} must look like key=value")
        kwargs[key] = yaml.safe_load(raw)
    return name, kwargs


def split_templates(
    templates: list[int], seed: int, fractions: tuple[float, float, float]
) -> dict[str, set[int]]:
    """Shuffle template ids with ``seed`` and cut them into disjoint train/validation/test sets."""
    ids = sorted(templates)
    random.Random(seed).shuffle(ids)
    n = len(ids)
    n_val = max(1, round(fractions[1] * n))
    n_test = max(1, round(fractions[2] * n))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ShearsError(
            f"{n} templates cannot be split into train/validation/test with fractions {fractions}"
        )
    return {
        "train": set(ids[:n_train]),
        "validation": set(ids[n_train : n_train + n_val]),
        "test": set(ids[n_train + n_val :]),
    }


def load_reasoning_gym(
    name: str,
    split: str,
    size: int,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    split_seed: int = 1234,
) -> list[dict]:
    """``size`` problems of reasoning-gym generator ``name`` for ``split``.

    Generators with templates (``gsm_symbolic``: 100 templates, chosen per item by
    ``ds.task_indices[idx]``; note ``metadata['source_index']`` is the item index, not the template)
    are split **by template** with ``split_seed``, so test templates never appear in training.
    Other generators are split by a hash of the question text (each split owns a disjoint slice
    of hash space), so no question appears in two splits. Questions are unique within a split. The output text is the
    worked solution when the generator has one (``answer_cot``), else ``The answer is X.``
    """
    if split not in SPLITS:
        raise ShearsError(f"split {split!r} is not known; allowed: {', '.join(SPLITS)}")
    if size < 1:
        raise ShearsError(f"size must be >= 1, got {size}")
    gym = _reasoning_gym()
    spec = name
    name, kwargs = parse_generator(spec)
    try:
        probe = gym.create_dataset(name, size=1, seed=seed, **kwargs)
    except Exception as exc:
        raise ShearsError(f"reasoning-gym generator {spec!r} cannot be created: {exc}") from exc
    offset = {"train": 0, "validation": 1, "test": 2}[split]
    in_split = _split_rule(probe, split, fractions, split_seed)
    out: list[dict] = []
    seen: set[str] = set()
    chunk = max(4 * size, 64)
    stale = 0  # rounds that added nothing new: the generator is exhausted
    for round_ in range(10_000):
        if stale >= 3:
            break
        before = len(out)
        ds = gym.create_dataset(
            # item idx is drawn from Random(seed + idx): consecutive rounds must not overlap
            name,
            size=chunk,
            seed=seed * 10_000_019 + offset * 1_000_003 + round_ * chunk,
            **kwargs,
        )
        for idx in range(len(ds)):
            keep, tpl, entry = in_split(ds, idx)
            if not keep:
                continue
            entry = entry if entry is not None else ds[idx]
            if entry["question"] in seen:
                continue
            seen.add(entry["question"])
            out.append(_gym_example(entry, tpl))
            if len(out) == size:
                return out
        stale = stale + 1 if len(out) == before else 0
    raise ShearsError(
        f"reasoning-gym generator {spec!r} yields only {len(out)} distinct {split} problems; "
        f"ask for fewer than {size} or widen its options"
    )


def _reasoning_gym():
    """The reasoning_gym module, or a one-line error naming the extra that installs it."""
    try:
        import reasoning_gym
    except ImportError as exc:
        raise ShearsError(
            "reasoning-gym tasks need the package reasoning-gym (pip install 'shears-nls[data]')"
        ) from exc
    return reasoning_gym


def _split_rule(probe, split: str, fractions: tuple[float, float, float], split_seed: int):
    """``(dataset, idx) -> (in split?, template or None, the item if it was built)`` for a
    generator like ``probe`` (an item is built only when needed: generation is the cost).

    Templated generators: the split owns a set of templates. Others: the split owns a fixed slice
    of question-hash space, so the same question never lands in two splits (small generators
    repeat questions)."""
    if bool(getattr(probe, "generators", None)) and hasattr(probe, "task_indices"):
        keep = split_templates(list(probe.generators), split_seed, fractions)[split]

        def by_template(ds, idx: int) -> tuple[bool, int | None, dict | None]:
            tpl = int(ds.task_indices[idx])
            return tpl in keep, tpl, None

        return by_template
    offset = {"train": 0, "validation": 1, "test": 2}[split]
    lo = sum(fractions[:offset]) / sum(fractions)
    hi = sum(fractions[: offset + 1]) / sum(fractions)

    def by_hash(ds, idx: int) -> tuple[bool, int | None, dict | None]:
        entry = ds[idx]
        return lo <= _hash_unit(entry["question"], split_seed) < hi, None, entry

    return by_hash


def _hash_unit(text: str, salt: int) -> float:
    """A stable hash of ``text`` mapped to [0, 1)."""
    import hashlib

    digest = hashlib.sha256(f"{salt}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _gym_example(entry: dict, template: int | None) -> dict:
    return _example(
        entry["question"], "", _gsm_answer_text(entry), str(entry["answer"]), template=template
    )
