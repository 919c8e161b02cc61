"""Data loaders: Alpaca JSON/JSONL records, reasoning-gym split by template, clear errors."""

import json

import pytest

from shears.data.sources import load_instructions
from shears.data.spec import DataSpec
from shears.data.tasks import load_reasoning_gym, split_templates
from shears.errors import ShearsError


def load_json_records(path, require=("instruction",)):
    """Instruction records of a JSON / JSONL file, checked for ``require``."""
    return load_instructions(DataSpec("json", str(path)), require=require)


def test_json_and_jsonl_records(tmp_path):
    rows = [
        {"instruction": "Add 1 and 2", "input": "", "output": "3", "answer": "3"},
        {"instruction": "Name a colour", "output": "red", "id": 7},
    ]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for name in ("a.json", "a.jsonl"):
        got = load_json_records(tmp_path / name)
        assert got[0]["instruction"] == "Add 1 and 2" and got[1]["input"] == ""
        assert got[1]["output"] == "red" and got[1]["id"] == 7


def test_json_record_errors(tmp_path):
    with pytest.raises(ShearsError, match="does not exist"):
        load_json_records(tmp_path / "missing.json")
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(ShearsError, match="holds no records"):
        load_json_records(tmp_path / "empty.json")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(ShearsError, match="not valid JSON"):
        load_json_records(tmp_path / "bad.json")
    (tmp_path / "nofield.json").write_text(json.dumps([{"question": "x", "output": "y"}]))
    with pytest.raises(ShearsError, match="record 0 has no 'instruction' field"):
        load_json_records(tmp_path / "nofield.json")
    (tmp_path / "noout.json").write_text(json.dumps([{"instruction": "x"}]))
    with pytest.raises(ShearsError, match="no 'output' field"):
        load_json_records(tmp_path / "noout.json", require=("instruction", "output"))


def test_split_templates_disjoint():
    parts = split_templates(list(range(20)), seed=1, fractions=(0.7, 0.15, 0.15))
    assert sum(len(p) for p in parts.values()) == 20
    assert not (parts["train"] & parts["test"]) and not (parts["train"] & parts["validation"])
    assert parts == split_templates(list(range(20)), seed=1, fractions=(0.7, 0.15, 0.15))


def test_reasoning_gym_split_by_template():
    pytest.importorskip("reasoning_gym")
    train = load_reasoning_gym("gsm_symbolic", "train", 12)
    test = load_reasoning_gym("gsm_symbolic", "test", 6)
    assert len(train) == 12 and len(test) == 6
    assert not {e["template"] for e in train} & {e["template"] for e in test}
    assert train[0]["output"].rstrip().endswith(train[0]["answer"])  # worked solution, #### N
    assert train == load_reasoning_gym("gsm_symbolic", "train", 12)  # reproducible
    with pytest.raises(ShearsError, match="cannot be created"):
        load_reasoning_gym("no_such_generator", "train", 2)
    with pytest.raises(ShearsError, match="split 'dev'"):
        load_reasoning_gym("gsm_symbolic", "dev", 2)


def test_reasoning_gym_options_and_hash_split_are_disjoint():
    pytest.importorskip("reasoning_gym")
    spec = "chain_sum?min_terms=2&max_terms=2&max_digits=1"
    splits = {s: load_reasoning_gym(spec, s, 8) for s in ("train", "validation", "test")}
    questions = {s: [e["instruction"] for e in rows] for s, rows in splits.items()}
    for s, qs in questions.items():
        assert len(set(qs)) == len(qs), f"{s} repeats a question"
        assert all(
            q.count("+") + q.count("-") == 1 for q in qs
        )  # the options reached the generator
    assert not set(questions["train"]) & set(questions["test"])
    assert not set(questions["train"]) & set(questions["validation"])
    assert not set(questions["validation"]) & set(questions["test"])
    with pytest.raises(ShearsError, match="distinct test problems"):
        load_reasoning_gym(spec, "test", 400)  # two one-digit terms: ~200 problems in all
    with pytest.raises(ShearsError, match="bogus"):
        load_reasoning_gym("chain_sum?bogus=1", "test", 2)
