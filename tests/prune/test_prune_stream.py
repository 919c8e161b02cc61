"""``--offload cpu|disk``: blocks streamed to the compute device one at a time give the same
masks and saved weights as the in-memory path, bit for bit, with one block's weights resident."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from prune_helpers import TEXT
from transformers import AutoModelForCausalLM

from conftest import tiny_model
from input_helpers import one_error, shears
from shears.artifacts import PRUNE_REPORT
from shears.config import from_dict
from shears.errors import ShearsError
from shears.prune import PruneConfig, prune_model, run_prune
from shears.prune import run as prune_run
from shears.prune.stream import CpuStream


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 3-block tiny LLaMA folder (safetensors) and a calibration text file."""
    from conftest import build_tiny_tokenizer

    root = tmp_path_factory.mktemp("stream")
    tok = build_tiny_tokenizer()
    tiny_model("llama", tokenizer=tok, layers=3, max_positions=1024).save_pretrained(root / "m")
    tok.save_pretrained(root / "m")
    (root / "calib.txt").write_text(TEXT)
    return root


def _run(source: Path, out: Path, **settings) -> tuple[object, dict]:
    cfg = PruneConfig(
        model=str(source / "m"),
        output_dir=str(out),
        calibration=str(source / "calib.txt"),
        nsamples=4,
        seqlen=32,
        batch_size=2,
        device="cpu",
        precision="fp32",
        plot=False,
        **settings,
    )
    result = run_prune(cfg, progress=False)
    return result, AutoModelForCausalLM.from_pretrained(out).state_dict()


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k] == 0, b[k] == 0), k  # the masks
        assert torch.equal(a[k], b[k]), k  # the weights, bit for bit


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"method": "sparsegpt"},
        {"method": "magnitude"},
        {"sparsity_profile": "owl"},
        {"targets": ["re:.*layers\\.0\\..*"]},  # blocks 1-2 never calibrated: copied as they are
    ],
    ids=["wanda", "sparsegpt", "magnitude", "owl", "block0-only"],
)
@pytest.mark.parametrize("offload", ["cpu", "disk"])
def test_streamed_equals_in_memory(tmp_path, source, offload, settings):
    ref, ref_sd = _run(source, tmp_path / "ref", **settings)
    got, got_sd = _run(source, tmp_path / offload, offload=offload, **settings)
    _assert_same(ref_sd, got_sd)
    assert got.layers == ref.layers
    assert got.model_parameters == ref.model_parameters
    assert got.profile == ref.profile
    mem = got.device_memory
    assert mem["offload"] == offload and ref.device_memory["offload"] == "none"
    # one block (and the modules before the blocks) on the device at once, never two blocks
    assert (
        mem["peak_resident_weight_bytes"]
        <= mem["largest_block_bytes"] + mem["outside_blocks_bytes"]
    )
    assert mem["peak_resident_weight_bytes"] < ref.device_memory["peak_resident_weight_bytes"]
    report = json.loads((tmp_path / offload / PRUNE_REPORT).read_text())
    assert report["device_memory"] == mem
    assert not list(tmp_path.glob(".shears-offload-*"))  # the offload folder is removed


def test_disk_offload_dir_is_used_and_cleaned(tmp_path, source):
    scratch = tmp_path / "scratch"
    _run(source, tmp_path / "out", offload="disk", offload_dir=str(scratch))
    assert scratch.is_dir() and not list(scratch.iterdir())


def test_prune_model_streams_a_model_in_cpu_memory(tiny_tokenizer):
    ids = torch.randint(0, len(tiny_tokenizer), (4, 16))
    a = tiny_model("llama", tokenizer=tiny_tokenizer, layers=3)
    b = tiny_model("llama", tokenizer=tiny_tokenizer, layers=3)
    cfg = PruneConfig(precision="fp32", batch_size=2)
    prune_model(a, tiny_tokenizer, cfg, calibration=ids, progress=False)
    stream = CpuStream(b, torch.device("cpu"))
    seen = []
    original = stream.block

    def spy(idx, write=True):
        seen.append((idx, stream.resident))
        return original(idx, write)

    stream.block = spy
    streamed = PruneConfig(precision="fp32", batch_size=2, offload="cpu")
    result = prune_model(
        b, tiny_tokenizer, streamed, calibration=ids, progress=False, stream=stream
    )
    # no block is left on the device when the next comes (the capture pass: with the embeddings)
    assert seen[0] == (0, stream.outside_bytes)
    assert all(resident == 0 for _, resident in seen[1:])
    assert [idx for idx, _ in seen[1:]] == [0, 1, 2]
    assert result.device_memory["peak_resident_weight_bytes"] == (
        stream.outside_bytes + max(stream.block_bytes)
    )
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(p, q), n


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"offload": "gpu"}, "--offload 'gpu' is not known; allowed: none, cpu, disk"),
        ({"offload_dir": "/tmp/x"}, "--offload-dir '/tmp/x' applies only to --offload disk"),
        ({"offload": "disk", "eval_ppl": True}, "--eval-ppl needs the whole model in memory"),
    ],
)
def test_bad_offload_settings(overrides, message):
    with pytest.raises(ShearsError, match=message) as err:
        from_dict(PruneConfig, overrides)
    assert "\n" not in str(err.value)


@pytest.fixture
def no_load(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(prune_run, "load_model", boom)
    monkeypatch.setattr(prune_run, "open_disk", boom)


def test_disk_refuses_gguf_before_loading(tmp_path, no_load):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\0" * 60)  # a readable header
    cfg = PruneConfig(model=str(gguf), output_dir=str(tmp_path / "out"), offload="disk")
    with pytest.raises(ShearsError, match="--offload disk reads .safetensors block by block"):
        run_prune(cfg, progress=False)


def test_disk_refuses_a_folder_without_safetensors(tmp_path, source, no_load):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "config.json").write_text((source / "m" / "config.json").read_text())
    cfg = PruneConfig(model=str(folder), output_dir=str(tmp_path / "out"), offload="disk")
    with pytest.raises(ShearsError, match="needs model.safetensors or model.safetensors.index"):
        run_prune(cfg, progress=False)


def test_disk_refuses_an_unwritable_offload_dir(tmp_path, source, no_load):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = PruneConfig(
        model=str(source / "m"),
        output_dir=str(tmp_path / "out"),
        offload="disk",
        offload_dir=str(blocker / "sub"),
    )
    with pytest.raises(ShearsError, match="--offload-dir '.*sub' is not writable") as err:
        run_prune(cfg, progress=False)
    assert "\n" not in str(err.value)


def test_disk_needs_the_stage_not_a_model_in_memory():
    cfg = PruneConfig(offload="disk")
    with pytest.raises(ShearsError, match="--offload disk reads the model from its folder"):
        prune_model(tiny_model("llama"), None, cfg, progress=False)


def test_disk_refuses_tensors_that_do_not_fit_the_config(tmp_path, source):
    folder = tmp_path / "bad"
    shutil.copytree(source / "m", folder)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 48  # the stored MLP weights are 64 wide
    (folder / "config.json").write_text(json.dumps(config))
    cfg = PruneConfig(
        model=str(folder),
        output_dir=str(tmp_path / "out"),
        calibration=str(source / "calib.txt"),
        nsamples=2,
        seqlen=16,
        offload="disk",
        device="cpu",
    )
    with pytest.raises(ShearsError, match="mlp.*has shape .*config.json makes it") as err:
        run_prune(cfg, progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".shears-offload-*"))


def test_bad_offload_on_the_command_line(capsys, tmp_path, source):
    one_error(
        capsys,
        "prune",
        "--model",
        source / "m",
        "--offload",
        "gpu",
        "--output-dir",
        tmp_path / "out",
        match="--offload 'gpu' is not known; allowed: none, cpu, disk",
    )


def test_cli_disk_offload(capsys, tmp_path, source):
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    rc, lines = shears(
        capsys,
        "prune",
        "--model",
        source / "m",
        "--calibration",
        source / "calib.txt",
        "--nsamples",
        "2",
        "--seqlen",
        "16",
        "--device",
        "cpu",
        "--no-plot",
        "--offload",
        "disk",
        "--offload-dir",
        scratch,
        "--output-dir",
        out,
    )
    assert rc == 0, lines
    report = json.loads((out / PRUNE_REPORT).read_text())
    assert report["device_memory"]["offload"] == "disk"
    assert report["targets"]["sparsity"] == pytest.approx(0.5)
    assert not list(scratch.iterdir())
