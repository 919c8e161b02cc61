"""The data layer: DataSpec parsing rules and load_examples / load_instructions on each source."""

import json

import pytest

from shears.data.sources import load_examples, load_instructions, open_dataset
from shears.data.spec import DataSpec
from shears.errors import ShearsError


def test_parse_rules(tmp_path):
    (tmp_path / "plain").write_text("[]")
    assert DataSpec.parse("gym:chain_sum?max_terms=2", size=4) == DataSpec(
        "gym", "chain_sum?max_terms=2", size=4
    )
    assert DataSpec.parse("missing.jsonl").source == "json"  # by suffix, even when missing
    assert DataSpec.parse(str(tmp_path / "plain")).source == "json"  # an existing file
    assert DataSpec.parse("hf:openai/gsm8k", config="main") == DataSpec(
        "hf", "openai/gsm8k", config="main"
    )
    assert DataSpec.parse("openai/gsm8k").source == "hf"


def test_text_sources(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "a.json").write_text("[]")
    assert DataSpec.text("default", split="heldout") == DataSpec(
        "text", "default", split="heldout", fields={"text": "text"}
    )
    assert DataSpec.text(str(tmp_path / "a.txt")).source == "text"
    spec = DataSpec.text(str(tmp_path / "a.json"), text_field="body")
    assert (spec.source, spec.text_field) == ("json", "body")
    assert DataSpec.text(str(tmp_path), config="en").source == "hf"
    with pytest.raises(ShearsError, match="holds no records"):
        load_examples(DataSpec.text("default"))


def test_bad_specs():
    with pytest.raises(ShearsError, match="data source 'csv' is not known"):
        DataSpec("csv", "x.csv")
    with pytest.raises(ShearsError, match="size must be >= 1"):
        DataSpec("gym", "chain_sum", size=0)
    with pytest.raises(ShearsError, match="needs a size"):
        load_examples(DataSpec("gym", "chain_sum"))


def test_json_records_keep_fields_and_map_ours(tmp_path):
    rows = [{"question": f"q{i}", "solution": f"s{i}", "id": i} for i in range(3)]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    spec = DataSpec("json", str(tmp_path / "d.json"), fields={"instruction": "question"})
    got = load_examples(spec, n=2)
    assert got == [{**r, "instruction": r["question"]} for r in rows[:2]]
    with pytest.raises(ShearsError, match="record 0 has no 'output' field"):
        load_instructions(spec, require=("instruction", "output"))
    spec = DataSpec("json", spec.path, fields={"instruction": "question", "output": "solution"})
    got = load_instructions(spec, n=1, require=("instruction", "output"))
    assert got == [
        {"instruction": "q0", "input": "", "output": "s0", "answer": "", "question": "q0"}
        | {"solution": "s0", "id": 0}
    ]


def test_datasets_folder_and_load_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    d = tmp_path / "ds"
    d.mkdir()
    (d / "test.jsonl").write_text("\n".join(json.dumps({"q": f"q{i}"}) for i in range(3)))
    got = load_examples(DataSpec("hf", str(d), split="test", fields={"instruction": "q"}))
    assert [r["instruction"] for r in got] == ["q0", "q1", "q2"]
    missing = str(tmp_path / "missing_ds")
    with pytest.raises(ShearsError, match=r"could not load dataset .* \(config 'x', split 'y'\)"):
        open_dataset(missing, "x", "y")
    with pytest.raises(ShearsError, match=r"could not load dataset .*missing_ds' \(split 'y'\)"):
        open_dataset(missing, None, "y")


def test_gym_size_and_cut():
    pytest.importorskip("reasoning_gym")
    spec = DataSpec("gym", "chain_sum?min_terms=2&max_terms=2&max_digits=2", size=6)
    six = load_examples(spec, split="validation")
    assert len(six) == 6 and load_examples(spec, split="validation", n=2) == six[:2]
    assert load_instructions(spec, split="validation", n=3) == six[:3]
