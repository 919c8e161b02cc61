import json

import pytest
import torch

from shears.data.calibration import (
    calibration_ids,
    heldout_ids,
    iter_texts,
    sample_windows,
    token_stream,
)
from shears.data.sources import default_texts
from shears.data.spec import source_kind, validate_source
from shears.errors import ShearsError

DOCS = [
    f"Document {i} talks about topic {i % 7} at some length, twice: {i} {i}." for i in range(60)
]


def test_sample_windows_reproducible_and_disjoint():
    ids = torch.arange(1000)
    a = sample_windows(ids, 8, 50, seed=0)
    b = sample_windows(ids, 8, 50, seed=0)
    c = sample_windows(ids, 8, 50, seed=1)
    assert a.shape == (8, 50) and torch.equal(a, b) and not torch.equal(a, c)
    # each window is a contiguous slice; windows never overlap
    assert ((a[:, 1:] - a[:, :-1]) == 1).all()
    assert len(set(a.flatten().tolist())) == 400


def test_sample_windows_exactly_enough_and_too_little():
    ids = torch.arange(100)
    assert sample_windows(ids, 4, 25, seed=3).flatten().sort().values.tolist() == list(range(100))
    with pytest.raises(
        ShearsError, match="gives only 99 tokens; --nsamples 4 x --seqlen 25 needs 100"
    ):
        sample_windows(ids[:99], 4, 25, seed=0)


def test_text_json_jsonl_sources(tmp_path, tiny_tokenizer):
    txt = tmp_path / "a.txt"
    txt.write_text("\n".join(DOCS))
    js = tmp_path / "a.json"
    js.write_text(json.dumps([{"content": d} for d in DOCS]))
    jl = tmp_path / "a.jsonl"
    jl.write_text("\n".join(json.dumps({"content": d}) for d in DOCS))
    assert [source_kind(str(p)) for p in (txt, js, jl)] == ["text", "json", "json"]
    assert "".join(iter_texts(str(txt))) == "\n".join(DOCS)
    assert list(iter_texts(str(js), text_field="content")) == DOCS
    assert list(iter_texts(str(jl), text_field="content")) == DOCS
    with pytest.raises(ShearsError, match="record 0 has no field 'text'.*--text-field"):
        list(iter_texts(str(js)))
    a = calibration_ids(tiny_tokenizer, str(jl), 4, 16, seed=0, text_field="content")
    b = calibration_ids(tiny_tokenizer, str(js), 4, 16, seed=0, text_field="content")
    assert a.shape == (4, 16) and torch.equal(a, b)


def test_datasets_source_from_disk(tmp_path, tiny_tokenizer):
    import datasets

    d = tmp_path / "ds"
    datasets.Dataset.from_dict({"body": DOCS}).save_to_disk(str(d))
    assert source_kind(str(d)) == "dataset"
    texts = list(iter_texts(str(d), text_field="body", seed=0))
    assert sorted(texts) == sorted(DOCS) and texts != DOCS  # shuffled with the seed
    with pytest.raises(ShearsError, match="has no column 'text'; columns: body"):
        list(iter_texts(str(d)))
    assert calibration_ids(tiny_tokenizer, str(d), 3, 20, text_field="body").shape == (3, 20)


def test_missing_file_and_unknown_dataset(tmp_path, monkeypatch):
    import datasets

    with pytest.raises(ShearsError, match="does not exist"):
        validate_source(str(tmp_path / "x.jsonl"))

    def offline(*a, **k):  # what the hub gives here, without waiting for the network
        raise ConnectionError("Couldn't reach 'no-such-dataset-here-xyz' on the Hub\nmore")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(
        ShearsError,
        match="could not load dataset 'no-such-dataset-here-xyz' .split 'train'.: Couldn't reach",
    ):
        list(iter_texts("no-such-dataset-here-xyz"))


def test_token_stream_bounded_and_separated(tiny_tokenizer):
    ids = token_stream(tiny_tokenizer, iter(DOCS), max_tokens=50)
    assert ids.numel() == 50
    full = token_stream(tiny_tokenizer, DOCS[:2], max_tokens=10_000)
    assert (full == tiny_tokenizer.eos_token_id).sum() == 2

    def endless():
        while True:
            yield "abc def " * 10

    assert token_stream(tiny_tokenizer, endless(), 1000).numel() == 1000  # stops reading


def test_default_offline_text_is_diverse_and_split(tiny_tokenizer):
    cal = [t for _, t in zip(range(24), default_texts("calibration"), strict=False)]
    held = [t for _, t in zip(range(24), default_texts("heldout"), strict=False)]
    assert len(set(cal)) == 24 and not set(cal) & set(held)
    assert any("####" in t for t in cal)  # worked GSM-style solutions are in
    ids = calibration_ids(tiny_tokenizer, "default", 4, 64, seed=0)
    assert ids.shape == (4, 64)
    assert not torch.equal(ids, calibration_ids(tiny_tokenizer, "default", 4, 64, seed=1))
    assert heldout_ids(tiny_tokenizer, "default", 300).numel() == 300
