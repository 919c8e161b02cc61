"""W8A8 calibration from the adapter's own training data (``--calibration task`` / ``auto``)."""

from __future__ import annotations

import json

import pytest
from deploy_helpers import base_and_adapter, cfg

from shears.artifacts import write_train_config
from shears.data.prompts import format_prompt
from shears.deploy import calibrate
from shears.deploy import run as deploy_run
from shears.deploy.run import RESULTS, check, run
from shears.errors import ShearsError
from shears.train.config import TrainConfig

RECORDS = [
    {"instruction": f"Add {i} and {i + 1}.", "output": f"The answer is {2 * i + 1}."}
    for i in range(40)
]


def _with_training_data(tmp_path, adapter, train_size: int = 0, style: str = "alpaca"):
    """Record in ``adapter`` a training run on a JSONL file of :data:`RECORDS`."""
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    tc = TrainConfig(
        model=str(tmp_path / "base"),
        output_dir=str(adapter),
        data=str(data),
        train_size=train_size,
        prompt_style=style,
    )
    write_train_config(adapter, tc)
    return data


def _rendered(records):
    return [format_prompt(r["instruction"], "", "alpaca") + r["output"] for r in records]


def test_auto_resolves_to_task_only_with_recorded_training_data(tmp_path, tiny_tokenizer):
    _, adapter = base_and_adapter(tmp_path, tiny_tokenizer)
    assert calibrate.resolve("auto", None) == "default"
    assert calibrate.resolve("auto", str(adapter)) == "default"  # no train_config.json
    _with_training_data(tmp_path, adapter)
    assert calibrate.resolve("auto", str(adapter)) == "task"
    assert calibrate.resolve("default", str(adapter)) == "default"  # given: kept


def test_task_texts_are_prompt_plus_answer_of_the_training_split(tmp_path, tiny_tokenizer):
    _, adapter = base_and_adapter(tmp_path, tiny_tokenizer)
    _with_training_data(tmp_path, adapter, train_size=25)
    texts = calibrate.task_texts(str(adapter), tiny_tokenizer)
    assert texts == _rendered(RECORDS[:25])  # the first train_size records, as trained


def _inside(row: list[int], tokenizer, rendered: set[str]) -> bool:
    """Whether the window ``row`` is a stretch of rendered texts joined by EOS."""
    pieces = tokenizer.decode(row, skip_special_tokens=False).split(tokenizer.eos_token)
    if len(pieces) == 1:
        return any(pieces[0] in t for t in rendered)
    return (
        any(t.endswith(pieces[0]) for t in rendered)
        and all(p in rendered for p in pieces[1:-1])
        and any(t.startswith(pieces[-1]) for t in rendered)
    )


def test_task_windows_come_from_the_training_texts(tmp_path, tiny_tokenizer):
    _, adapter = base_and_adapter(tmp_path, tiny_tokenizer)
    _with_training_data(tmp_path, adapter)
    rendered = set(_rendered(RECORDS))
    win = calibrate.windows("task", str(adapter), tiny_tokenizer, nsamples=6, seqlen=48, seed=3)
    assert tuple(win.shape) == (6, 48)
    assert all(_inside(row, tiny_tokenizer, rendered) for row in win.tolist())
    other = calibrate.windows("default", None, tiny_tokenizer, nsamples=6, seqlen=48, seed=3)
    assert not any(_inside(row, tiny_tokenizer, rendered) for row in other.tolist())


@pytest.mark.parametrize("adapter_kind", ["none", "no_train_config"])
def test_task_without_recorded_training_data_is_one_line(tmp_path, tiny_tokenizer, adapter_kind):
    base, adapter = base_and_adapter(tmp_path, tiny_tokenizer)
    kw = {"model": str(base)} if adapter_kind == "none" else {"adapter": str(adapter)}
    with pytest.raises(ShearsError) as err:
        check(cfg(tmp_path / "o", precision="w8a8", calibration="task", **kw))
    msg = str(err.value)
    assert "\n" not in msg and "--calibration task" in msg
    assert not (tmp_path / "o").exists()


def test_w8a8_deploy_records_task_calibration(tmp_path, tiny_tokenizer):
    _, adapter = base_and_adapter(tmp_path, tiny_tokenizer)
    data = _with_training_data(tmp_path, adapter)
    before = data.read_bytes()
    out = tmp_path / "out"
    r = run(
        cfg(
            out,
            adapter=str(adapter),
            sub_adapter="max",
            precision="w8a8",
            nsamples=4,
            seqlen=32,
            verify=False,
        )
    )
    assert r["calibration"] == "task"
    assert json.loads((out / RESULTS).read_text())["calibration"] == "task"
    assert "W8A8 calibration text | task" in (out / "README.md").read_text()
    assert data.read_bytes() == before  # the training data is read, never touched


def test_int8_weights_reads_no_calibration(tmp_path, tiny_tokenizer):
    _, adapter = base_and_adapter(tmp_path, tiny_tokenizer)
    r = run(
        cfg(
            tmp_path / "o",
            adapter=str(adapter),
            sub_adapter="max",
            precision="int8-weights",
            verify=False,
        )
    )
    assert r["calibration"] is None


def test_w8a8_float_modules_keep_float_activations_and_zeros(tmp_path, tiny_tokenizer):
    from deploy_helpers import sparse_base

    base = sparse_base(tmp_path, tiny_tokenizer)
    r = run(
        cfg(
            tmp_path / "o",
            model=str(base),
            precision="w8a8",
            nsamples=4,
            seqlen=16,
            w8a8_float="down_proj",
            verify=False,
        )
    )
    assert r["w8a8_float"] == ["down_proj"] and r["advice"] == []
    layers = r["sparse_kernel"]["layers"]
    down = [x["exec_type"] for x in layers if "down_proj" in x["node"]]
    rest = [
        x["exec_type"] for x in layers if "down_proj" not in x["node"] and ".layers." in x["node"]
    ]
    assert len(down) == 2 and rest  # one down_proj per block
    assert not any("i8" in t.lower() for t in down)  # float activations there
    assert all("i8" in t.lower() for t in rest)  # int8 matmuls elsewhere
    assert all(f >= 0.5 for k, f in r["ir_sparsity_per_layer"].items() if ".layers." in k)
    full = tmp_path / "f32"
    f32 = run(cfg(full, model=str(base), precision="fp32", verify=False))
    assert r["bytes"]["ir_bin"] < 0.4 * f32["bytes"]["ir_bin"]  # down_proj weights are int8 too


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"precision": "int8-weights", "w8a8_float": "down_proj"}, "--w8a8-float"),
        ({"precision": "w8a8", "w8a8_float": "dwn_proj"}, "'dwn_proj'"),
    ],
)
def test_w8a8_float_bad_values_are_one_line(tmp_path, tiny_tokenizer, kw, needle, monkeypatch):
    from deploy_helpers import sparse_base

    base = sparse_base(tmp_path, tiny_tokenizer)
    monkeypatch.setattr(deploy_run, "load", lambda *a: pytest.fail("loaded before the check"))
    with pytest.raises(ShearsError) as err:
        run(cfg(tmp_path / "o", model=str(base), nsamples=4, seqlen=16, **kw))
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "o").exists()


def test_w8a8_float_auto_is_down_proj_and_none_is_all_int8(tmp_path, tiny_tokenizer):
    from deploy_helpers import sparse_base

    base = sparse_base(tmp_path, tiny_tokenizer)
    kw = {"model": str(base), "precision": "w8a8", "nsamples": 4, "seqlen": 16, "verify": False}
    auto = run(cfg(tmp_path / "a", **kw))  # the default
    none = run(cfg(tmp_path / "n", w8a8_float="none", **kw))
    assert auto["w8a8_float"] == ["down_proj"] and none["w8a8_float"] == []
    types = [
        x["exec_type"].lower() for x in none["sparse_kernel"]["layers"] if ".layers." in x["node"]
    ]
    assert types and all("i8" in t for t in types)
    assert "W8A8 float-activation linears | down_proj" in (tmp_path / "a" / "README.md").read_text()


def test_precision_advice_marks_all_int8_w8a8_not_recommended():
    from shears.deploy.report import model_card, precision_advice

    assert precision_advice("int8-weights", []) == []
    assert precision_advice("w8a8", ["down_proj"]) == []
    (note,) = precision_advice("w8a8", [])
    assert note.startswith("not recommended") and "46.5 -> 6.5" in note
    (sparse,) = precision_advice("w8a8-sparse", ["down_proj"])
    assert "do not run the sparse int8" in sparse
    result = {
        "name": "d",
        "precision": "w8a8",
        "model": "m",
        "runtime_properties": {},
        "base_linear_sparsity": 0.5,
        "ir_sparsity": {"sparsity": 0.5, "matmuls": 4},
        "bytes": {"ir_bin": 1e6},
        "sparse_kernel": {"sparse_kernel_layers": 0, "matmul_layers": 4, "exec_types": {}},
        "cpu": {"model": "x", "amx": False},
        "advice": [note],
    }
    assert f"**Note:** {note}." in model_card(result)
