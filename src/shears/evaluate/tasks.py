"""Evaluation tasks: what to score (``kind``) and where its data comes from (``source``).

A task is given as a :class:`TaskSpec` dict (config files) or a short string (CLI):

- ``gsm_symbolic`` and the other names in :data:`PRESETS`;
- ``<kind>:<file>``: a local JSON / JSONL file of LLM-Adapters records;
- ``<kind>:gym:<generator>``: reasoning-gym problems of the held-out **test** templates;
- ``<kind>:hf:<dataset>[:<config>]``: a ``datasets`` dataset (hub id or local path), split ``test``;
- ``lmeval:<task>``: an lm-evaluation-harness task (optional extra ``lmeval``).

Kinds: ``math`` (last number, within 1e-3), ``letter`` (AQuA, first A-E), ``mc`` (log-likelihood
of each choice; records ``{"question"|"instruction", "choices": [...], "label": i}``), ``mc_gen``
(generate, then match the answer word as LLM-Adapters does), ``ppl`` (sliding-window perplexity of
held-out text: ``ppl:default`` is offline text disjoint from the pruning calibration stream,
``ppl:<file>`` a text / JSON file, ``ppl:hf:<dataset>[:<config>]`` a dataset's ``text`` column).

Every loader checks the fields it needs and raises a one-line ShearsError naming the record.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shears.config import field, from_dict
from shears.data.spec import DataSpec
from shears.errors import ShearsError
from shears.evaluate.extract import parse_label_number

KINDS = ("math", "letter", "mc", "mc_gen", "ppl", "lmeval")
SOURCES = ("json", "text", "gym", "hf", "lmeval")
KIND_ALIASES = {"aqua": "letter", "mcgen": "mc_gen", "perplexity": "ppl", "lm_eval": "lmeval"}

PRESETS: dict[str, dict[str, Any]] = {
    "gsm_symbolic": {"kind": "math", "source": "gym", "path": "gsm_symbolic"},
    "gsm_symbolic_mc": {"kind": "mc", "source": "gym", "path": "gsm_symbolic"},
    "gsm_symbolic_mc_gen": {"kind": "mc_gen", "source": "gym", "path": "gsm_symbolic"},
    "basic_arithmetic": {"kind": "math", "source": "gym", "path": "basic_arithmetic"},
    "chain_sum": {"kind": "math", "source": "gym", "path": "chain_sum"},
    "leg_counting": {"kind": "math", "source": "gym", "path": "leg_counting"},
    "ppl": {"kind": "ppl", "source": "text", "path": "default"},
    "gsm8k": {
        "kind": "math",
        "source": "hf",
        "path": "openai/gsm8k",
        "config": "main",
        "fields": {"instruction": "question"},
    },
}


@dataclass
class TaskSpec:
    """One evaluation task."""

    kind: str = field("math", help=f"what is scored: {', '.join(KINDS)}")
    source: str = field("json", help=f"where the data comes from: {', '.join(SOURCES)}")
    path: str = field("", help="file path, reasoning-gym generator, dataset id or lm-eval task")
    name: str = field("", help="label in the results (default: derived from path)")
    config: str | None = field(None, help="datasets config name (source hf)")
    split: str = field("test", help="split: datasets split, or reasoning-gym template split")
    fields: dict[str, str] = field({}, help="our field -> column name (source hf / json)")
    size: int | None = field(
        None, help="reasoning-gym problems to generate (default: --limit or --gym-size)"
    )
    seed: int = field(0, help="reasoning-gym seed; also the seed of MC distractors")
    num_choices: int = field(4, help="choices per question for multiple choice built from gym")

    def __post_init__(self) -> None:
        self.kind = KIND_ALIASES.get(self.kind, self.kind)
        if self.kind not in KINDS:
            raise ShearsError(f"task kind {self.kind!r} is not known; allowed: {', '.join(KINDS)}")
        if self.source not in SOURCES:
            raise ShearsError(
                f"task source {self.source!r} is not known; allowed: {', '.join(SOURCES)}"
            )
        if not self.path:
            raise ShearsError(f"task of kind {self.kind!r} needs a path (file, generator or id)")
        if (self.kind == "lmeval") != (self.source == "lmeval"):
            raise ShearsError("lm-eval tasks are given as lmeval:<task> (kind and source lmeval)")
        if self.num_choices < 2:
            raise ShearsError(f"num_choices must be >= 2, got {self.num_choices}")
        if self.size is not None and self.size < 1:
            raise ShearsError(f"task size must be >= 1, got {self.size}")
        if not self.name:
            p = Path(self.path)
            base = p.stem if self.source in ("json", "text") else self.path
            if self.source in ("json", "text") and base in ("test", "train", "dev", "validation"):
                base = p.parent.name or base  # LLM-Adapters: dataset/<task>/test.json
            base = base.split("?", 1)[0]  # drop reasoning-gym generator options
            base = base.replace("/", "_")
            self.name = base if self.kind in ("math", "lmeval") else f"{base}_{self.kind}"

    def data_spec(self, size: int) -> DataSpec:
        """The task's data source (a json, gym or hf source); reasoning-gym generates ``size``
        problems unless the task sets its own."""
        return DataSpec(
            self.source,
            self.path,
            self.config,
            self.split,
            self.fields,
            self.size or size,
            self.seed,
        )

    @property
    def is_accuracy(self) -> bool:
        """Whether the task reports an accuracy that enters the unweighted mean."""
        return self.kind != "ppl"


def parse_task(item: str | dict | TaskSpec) -> TaskSpec:
    """A task string (see module doc), a TaskSpec dict or a TaskSpec -> TaskSpec."""
    if isinstance(item, TaskSpec):
        return item
    if isinstance(item, dict):
        return from_dict(TaskSpec, item, prefix="tasks.")
    if not isinstance(item, str) or not item.strip():
        raise ShearsError(f"a task must be a name, kind:source or a mapping, got {item!r}")
    s = item.strip()
    if s in PRESETS:
        return from_dict(TaskSpec, {"name": s, **PRESETS[s]})
    if ":" not in s:
        raise ShearsError(
            f"unknown task {s!r}; use one of {', '.join(PRESETS)}, or <kind>:<file>, "
            f"<kind>:gym:<generator>, <kind>:hf:<dataset>[:<config>], lmeval:<task> "
            f"(kinds: {', '.join(k for k in KINDS if k != 'lmeval')})"
        )
    kind, rest = s.split(":", 1)
    kind = KIND_ALIASES.get(kind, kind)
    if kind == "lmeval":
        return TaskSpec(kind="lmeval", source="lmeval", path=rest)
    if kind not in KINDS:
        raise ShearsError(f"unknown task kind {kind!r} in {s!r}; allowed: {', '.join(KINDS)}")
    if rest.startswith("gym:"):
        return TaskSpec(kind=kind, source="gym", path=rest[4:])
    if rest.startswith("hf:"):
        parts = rest[3:].split(":")
        if kind == "ppl":
            conf = parts[1] if len(parts) > 1 else None
            return TaskSpec(kind="ppl", source="text", path=parts[0], config=conf)
        return TaskSpec(
            kind=kind, source="hf", path=parts[0], config=parts[1] if len(parts) > 1 else None
        )
    if kind == "ppl":
        return TaskSpec(kind="ppl", source="text", path=rest)
    return TaskSpec(kind=kind, source="json", path=rest)


# ---------------------------------------------------------------------------- loading


def load_task_data(spec: TaskSpec, limit: int | None = None, gym_size: int = 200) -> list[dict]:
    """Examples of ``spec`` (at most ``limit``), checked for the fields its kind needs.

    math/letter/mc_gen examples: ``instruction``, ``input``, ``answer`` (+ ``answer_words`` for
    mc_gen); mc: ``instruction``, ``input``, ``choices``, ``label``; ppl: one ``{"source"}`` (the
    text source, checked here, read by the runner through ``data.calibration.heldout_ids``).
    lm-eval tasks load their own data (returns ``[]``).
    """
    if spec.kind == "lmeval":
        return []
    if spec.kind == "ppl":
        from shears.data.spec import validate_source

        validate_source(spec.path, f"task {spec.name!r}:")
        return [{"source": spec.path}]
    from shears.data.sources import load_examples

    rows = load_examples(spec.data_spec(limit or gym_size))
    rows = _with_choices(spec, rows) if spec.source == "gym" else [_instruction(r) for r in rows]
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise ShearsError(f"task {spec.name!r} has no examples")
    checker = {"math": _check_math, "letter": _check_letter, "mc": _check_mc}
    where = f"task {spec.name!r}"
    if spec.kind == "mc_gen":
        return _prepare_mc_gen(rows, where)
    return [checker[spec.kind](r, i, where) for i, r in enumerate(rows)]


def _instruction(row: dict) -> dict:
    """``row`` with an ``instruction`` taken from ``question`` / ``query`` / ``prompt`` /
    ``sentence`` when it has none."""
    if "instruction" in row:
        return row
    alt = next((k for k in ("question", "query", "prompt", "sentence") if k in row), None)
    return {**row, "instruction": row[alt]} if alt else row


def _with_choices(spec: TaskSpec, rows: list[dict]) -> list[dict]:
    """Generated problems as a multiple-choice task (``mc`` / ``mc_gen``)."""
    from shears.data.tasks import ANSWER_PREFIX

    if spec.kind in ("mc", "mc_gen"):
        rows = make_choices(rows, spec.num_choices, spec.seed)
    if spec.kind == "mc" and all(r["output"].startswith(ANSWER_PREFIX + " ") for r in rows):
        # a model tuned on this generator answers "The answer is X.": score each choice after
        # that prefix, where the tuned model puts it (not as the first token of the response)
        rows = [{**r, "answer_prefix": ANSWER_PREFIX} for r in rows]
    return rows


# ---------------------------------------------------------------------------- checks


def _need(r: dict, key: str, i: int, where: str) -> Any:
    if key not in r or r[key] is None or (isinstance(r[key], str) and not r[key].strip()):
        have = ", ".join(sorted(r)) or "nothing"
        raise ShearsError(f"{where}: record {i} has no {key!r} field (found: {have})")
    return r[key]


def _base(r: dict, i: int, where: str) -> dict:
    return {
        "instruction": str(_need(r, "instruction", i, where)),
        "input": str(r.get("input") or ""),
    }


def _check_math(r: dict, i: int, where: str) -> dict:
    out = _base(r, i, where)
    answer = _need(r, "answer", i, where)
    value = parse_label_number(answer)
    if value is None:
        raise ShearsError(f"{where}: record {i} answer {answer!r} is not a number")
    out["answer"] = _format_number(value)  # "1,000" and "... #### 1000" -> "1000"
    return out


def _check_letter(r: dict, i: int, where: str) -> dict:
    out = _base(r, i, where)
    answer = str(_need(r, "answer", i, where)).strip()
    if answer[:1].upper() not in "ABCDE" or not answer[:1].isalpha():
        raise ShearsError(f"{where}: record {i} answer {answer!r} is not a letter A-E")
    out["answer"] = answer[:1].upper()
    return out


def _check_mc(r: dict, i: int, where: str) -> dict:
    out = _base(r, i, where)
    choices = _need(r, "choices", i, where)
    if not isinstance(choices, list) or len(choices) < 2:
        raise ShearsError(f"{where}: record {i} 'choices' must be a list of >= 2 strings")
    choices = [str(c) for c in choices]
    if any(not c for c in choices):
        raise ShearsError(f"{where}: record {i} has an empty choice")
    if "label" in r and r["label"] is not None:
        label = r["label"]
        if isinstance(label, str) and label.strip().isdigit():
            label = int(label)
        if isinstance(label, str) and len(label.strip()) == 1 and label.strip().isalpha():
            label = ord(label.strip().upper()) - ord("A")
        if not isinstance(label, int) or isinstance(label, bool):
            raise ShearsError(f"{where}: record {i} 'label' {r['label']!r} is not a choice index")
    elif r.get("answer") not in (None, ""):
        if str(r["answer"]) not in choices:
            raise ShearsError(
                f"{where}: record {i} answer {r['answer']!r} is not one of its choices"
            )
        label = choices.index(str(r["answer"]))
    else:
        raise ShearsError(f"{where}: record {i} has no 'label' (index of the right choice)")
    if not 0 <= label < len(choices):
        raise ShearsError(
            f"{where}: record {i} label {label} is outside its {len(choices)} choices"
        )
    out.update(choices=choices, label=label)
    if r.get("answer_prefix"):
        out["answer_prefix"] = str(r["answer_prefix"])
    return out


def mc_gen_prompt(question: str, choices: list[str]) -> str:
    """LLM-Adapters' multiple-choice instruction: numbered answers and an answer format line."""
    lines = [question, ""]
    lines += [f"Answer{k + 1}: {c}" for k, c in enumerate(choices)]
    fmt = "/".join(f"answer{k + 1}" for k in range(len(choices)))
    return "\n".join(lines) + f"\n\nAnswer format: {fmt}"


def _prepare_mc_gen(rows: list[dict], where: str) -> list[dict]:
    """mc_gen examples: records with ``choices`` get the LLM-Adapters numbered prompt (answer word
    ``answerK``); plain records (LLM-Adapters commonsense JSON: ``instruction`` with the options
    inside, ``answer`` such as ``solution1``) are matched against the dataset's answer words."""
    out: list[dict] = []
    vocabulary: list[str] = []
    for i, r in enumerate(rows):
        if r.get("choices") is not None:
            e = _check_mc(r, i, where)
            words = [f"answer{k + 1}" for k in range(len(e["choices"]))]
            out.append(
                {
                    "instruction": mc_gen_prompt(e["instruction"], e["choices"]),
                    "input": e["input"],
                    "answer": words[e["label"]],
                    "answer_words": words,
                }
            )
        else:
            e = _base(r, i, where)
            e["answer"] = str(_need(r, "answer", i, where)).strip()
            if r.get("answer_words"):
                e["answer_words"] = [str(w) for w in r["answer_words"]]
            elif e["answer"] not in vocabulary:
                vocabulary.append(e["answer"])
            out.append(e)
    for e in out:
        e.setdefault("answer_words", vocabulary)
    return out


# ---------------------------------------------------------------------------- offline MC


def _format_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _distractors(answer: str, pool: list[str], k: int, rng: random.Random) -> list[str]:
    value = parse_label_number(answer) if re.fullmatch(r"\s*-?[\d,]+\.?\d*\s*", answer) else None
    out: list[str] = []
    if value is not None:
        mag = max(1.0, abs(value))
        offsets = [1, -1, 2, -2, 10, -10, 5, -5]
        cands = [value + o for o in offsets] + [value * 2, value / 2, value + mag, value * 3]
        cands = [
            c
            for c in cands
            if (value < 0 or c >= 0) and float(c).is_integer() == float(value).is_integer()
        ]
        rng.shuffle(cands)
        for c in cands:
            s = _format_number(c)
            if s != _format_number(value) and s not in out:
                out.append(s)
            if len(out) == k:
                return out
    others = [p for p in dict.fromkeys(pool) if p != answer and p not in out]
    rng.shuffle(others)
    out += others[: k - len(out)]
    n = 1
    while len(out) < k:  # tiny pools: synthesise
        s = f"{answer} ({n})"
        n += 1
        if s not in out:
            out.append(s)
    return out


def make_choices(rows: list[dict], num_choices: int = 4, seed: int = 0) -> list[dict]:
    """Turn question/answer records into multiple choice: the right answer plus
    ``num_choices - 1`` distractors (nearby numbers for numeric answers, else other answers of the
    set), shuffled reproducibly from ``seed``. Adds ``choices`` and ``label``."""
    pool = [str(r["answer"]) for r in rows]
    out = []
    for i, r in enumerate(rows):
        rng = random.Random(seed * 1_000_003 + i)
        answer = str(r["answer"])
        correct = (
            _format_number(parse_label_number(answer))
            if re.fullmatch(r"\s*-?[\d,]+\.?\d*\s*", answer)
            else answer
        )
        choices = [correct] + _distractors(answer, pool, num_choices - 1, rng)
        rng.shuffle(choices)
        out.append({**r, "choices": choices, "label": choices.index(correct)})
    return out
