"""Training data sources of TrainConfig: JSON/JSONL, a `datasets` folder with a field mapping,
reasoning-gym; and the encoding checks (cutoff, answer-only loss)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from nls_worker import make_config, make_examples, make_tokenizer  # noqa: E402

from shears.data.tokenize import IGNORE_INDEX  # noqa: E402
from shears.errors import ShearsError  # noqa: E402
from shears.train.data import encode_examples, load_train_examples  # noqa: E402


def test_json_file_and_train_size(tmp_path):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(e) for e in make_examples(5)))
    rows = load_train_examples(make_config("o", data=str(tmp_path / "d.jsonl"), train_size=3))
    assert [r["output"] for r in rows] == [e["output"] for e in make_examples(3)]
    (tmp_path / "bad.json").write_text(json.dumps([{"instruction": "x"}]))
    with pytest.raises(ShearsError, match="no 'output' field"):
        load_train_examples(make_config("o", data=str(tmp_path / "bad.json")))


def test_datasets_folder_with_field_mapping(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    rows = [{"question": f"q{i}", "solution": f"s{i}"} for i in range(4)]
    (d / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = make_config(
        "o", data=f"hf:{d}", data_fields={"instruction": "question", "output": "solution"}
    )
    got = load_train_examples(cfg)
    assert [(r["instruction"], r["output"]) for r in got] == [(f"q{i}", f"s{i}") for i in range(4)]
    with pytest.raises(ShearsError, match="no 'instruction' field"):
        load_train_examples(make_config("o", data=f"hf:{d}"))


def test_reasoning_gym_source():
    pytest.importorskip("reasoning_gym")
    rows = load_train_examples(make_config("o", data="gym:gsm_symbolic", train_size=3))
    assert len(rows) == 3 and all(r["output"] and r["template"] is not None for r in rows)
    with pytest.raises(ShearsError, match="nope_gen"):
        load_train_examples(make_config("o", data="gym:nope_gen", train_size=3))


def test_encode_answer_only_and_cutoff():
    tok = make_tokenizer()
    ds, stats = encode_examples(tok, make_examples(3), "alpaca", 512, train_on_inputs=False)
    assert stats["examples"] == 3 and stats["examples_dropped"] == 0
    labels = ds[0]["labels"]
    assert labels[0] == IGNORE_INDEX and labels[-1] == tok.eos_token_id
    # a cutoff that ends inside the prompt for every example is refused before training
    with pytest.raises(ShearsError, match="too short for any example"):
        encode_examples(tok, make_examples(3), "alpaca", 20, train_on_inputs=True)
