"""--resume with a damaged checkpoint falls back to the last complete one (or starts over), and
--resume compares paths resolved, not as strings."""

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from nls_worker import PoisonAt, make_config, make_examples, make_model, make_tokenizer  # noqa: E402

from shears.errors import ShearsError  # noqa: E402
from shears.train import last_checkpoint, train_nls  # noqa: E402
from shears.train.trainer import checkpoint_problem  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="module")
def interrupted(tok, tmp_path_factory):
    """An output folder with checkpoint-2 and checkpoint-4 of a 6-step run, and the adapter of the
    same run uninterrupted."""
    root = tmp_path_factory.mktemp("ckpt")
    with pytest.raises(ShearsError, match="checkpoint-4"):
        cfg = make_config(str(root / "run"), max_steps=6, save_steps=2)
        train_nls(make_model(tok), tok, make_examples(), cfg, callbacks=[PoisonAt(4)])
    assert sorted(p.name for p in (root / "run").glob("checkpoint-*")) == [
        "checkpoint-2",
        "checkpoint-4",
    ]
    train_nls(make_model(tok), tok, make_examples(), make_config(str(root / "straight")))
    return root


def _copy(interrupted, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(interrupted / "run", dst)
    return dst


def _cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    "name, damage",
    [
        ("elastic_adapter.safetensors", "cut"),
        ("optimizer.pt", "cut"),
        ("scheduler.pt", "empty"),
        ("rng_state.pth", "cut"),
        ("trainer_state.json", "cut"),
        ("trainer_state.json", "missing"),
        ("optimizer.pt", "zeros"),
    ],
)
def test_checkpoint_problem_names_the_damaged_file(interrupted, tmp_path, name, damage):
    run = _copy(interrupted, tmp_path)
    ckpt = run / "checkpoint-4"
    assert checkpoint_problem(ckpt) is None
    f = ckpt / name
    if damage == "cut":
        _cut(f)
    elif damage == "empty":
        f.write_bytes(b"")
    elif damage == "zeros":  # the size survived, the data did not (a crash before the flush)
        f.write_bytes(bytes(f.stat().st_size))
    else:
        f.unlink()
    problem = checkpoint_problem(ckpt)
    assert problem and name in problem
    assert last_checkpoint(run) == run / "checkpoint-2"


def test_resume_skips_a_truncated_checkpoint(interrupted, tok, tmp_path, caplog):
    run = _copy(interrupted, tmp_path)
    _cut(run / "checkpoint-4" / "optimizer.pt")  # killed while writing the optimizer
    with caplog.at_level(logging.WARNING, logger="shears"):
        res = train_nls(
            make_model(tok), tok, make_examples(), make_config(str(run), max_steps=6, resume=True)
        )
    assert res.resumed_from.endswith("checkpoint-2") and res.global_steps == 6
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("checkpoint-4" in m and "optimizer.pt" in m for m in warned), warned
    got = load_file(str(run / "adapter_model.safetensors"))
    want = load_file(str(interrupted / "straight" / "adapter_model.safetensors"))
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-6), k


def test_resume_with_every_checkpoint_damaged_starts_over(interrupted, tok, tmp_path, caplog):
    run = _copy(interrupted, tmp_path)
    _cut(run / "checkpoint-4" / "elastic_adapter.safetensors")
    _cut(run / "checkpoint-2" / "trainer_state.json")
    with caplog.at_level(logging.WARNING, logger="shears"):
        res = train_nls(
            make_model(tok), tok, make_examples(), make_config(str(run), max_steps=6, resume=True)
        )
    assert res.resumed_from is None and res.global_steps == 6
    got = load_file(str(run / "adapter_model.safetensors"))
    want = load_file(str(interrupted / "straight" / "adapter_model.safetensors"))
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-6), k


def test_resume_compares_paths_resolved(tok, tmp_path, monkeypatch):
    """`./out` then `/abs/out`, `./base` then `/abs/base`, from another current folder: the same
    run; another model folder is still refused."""
    monkeypatch.chdir(tmp_path)
    for d in ("base", "other", "elsewhere"):
        (tmp_path / d).mkdir()
    cfg = make_config("./out", model="./base", max_steps=1, warmup=0)
    first = train_nls(make_model(tok), tok, make_examples(4), cfg)
    saved = json.loads((tmp_path / "out" / "train_config.json").read_text())
    assert saved["model"] == "./base" and saved["output_dir"] == "./out"
    assert saved["resolved"]["model"] == str(tmp_path.resolve() / "base")
    assert saved["resolved"]["output_dir"] == str(tmp_path.resolve() / "out")

    monkeypatch.chdir(tmp_path / "elsewhere")
    again = make_config(str(tmp_path / "out"), model="../base", max_steps=1, warmup=0, resume=True)
    assert train_nls(make_model(tok), tok, make_examples(4), again) == first
    other = make_config(str(tmp_path / "out"), model="../other", max_steps=1, warmup=0, resume=True)
    with pytest.raises(ShearsError, match="--resume with a different model"):
        train_nls(make_model(tok), tok, make_examples(4), other)


def test_resume_reads_a_train_config_of_the_previous_layout(tmp_path):
    """A run started before the adapter / space split (every key under ``space``) resumes with
    the same settings, and is refused with other ones."""
    from shears.adapters import ElasticLoraConfig
    from shears.artifacts import train_config_record
    from shears.train.folder import _check_resume_config

    cfg = make_config(str(tmp_path), max_steps=1)
    record = train_config_record(cfg)
    record["space"] = {**record.pop("adapter"), **record["space"]}
    assert set(record["space"]) == {"targets", "r_max", "alpha", "dropout", "sparse_adapter",
                                    "groups", "widths"}  # fmt: skip
    (tmp_path / "train_config.json").write_text(json.dumps(record))
    _check_resume_config(tmp_path, cfg)
    other = make_config(str(tmp_path), max_steps=1, adapter=ElasticLoraConfig(alpha=2))
    with pytest.raises(ShearsError, match="--resume with a different setting: adapter"):
        _check_resume_config(tmp_path, other)


def test_checkpoint_step_reads_the_folder_name():
    """``checkpoint-N`` gives N (a trailing slash too); any other name gives None."""
    from shears.train.folder import checkpoint_step

    assert checkpoint_step("/r/train/checkpoint-80/") == 80
    assert checkpoint_step(Path("checkpoint-160")) == 160
    assert checkpoint_step("/r/elsewhere") is None
    assert checkpoint_step("checkpoint-80-old") is None
