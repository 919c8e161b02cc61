"""Bad input fails with one clear line before anything is loaded or exported."""

from __future__ import annotations

import logging
import sys

import pytest
from deploy_helpers import base_and_adapter, cfg, sparse_base

import shears.models
from shears.cli import build_parser, main
from shears.deploy import run as deploy_run
from shears.deploy.config import DeployConfig
from shears.deploy.run import check, run
from shears.errors import ShearsError

NO_AMX = {"model": "Some CPU", "flags": ["avx512f"], "amx": False}


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if a model is loaded. Every stage module is imported first and its own
    ``load_model`` name patched too: a module first imported under the patch would otherwise keep
    the refusal after the test (and break later tests)."""

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the input was checked")

    build_parser()  # imports every stage's modules
    real = shears.models.load_model
    for name, module in list(sys.modules.items()):
        if name.startswith("shears") and getattr(module, "load_model", None) is real:
            monkeypatch.setattr(module, "load_model", refuse)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "no model given"),
        ({"model": "m", "precision": "int4"}, "unknown precision 'int4'.*int8-weights"),
        ({"model": "m", "merge": "plain"}, "unknown --merge 'plain'.*masked, separate"),
        ({"model": "m", "precision": "w8a8-sparse", "sparse_rate": 1.5}, "out of range"),
        ({"model": "m", "precision": "w8a8-sparse", "sparse_rate": 0.0}, "out of range"),
        ({"model": "m", "sparse_rate": 0.5}, "only to --precision w8a8-sparse"),
        ({"model": "m", "inference_precision": "f16"}, "inference-precision 'f16'"),
        ({"model": "m", "dtype": "bfloat16"}, "float32 only"),
        ({"model": "m", "nsamples": 0}, "--nsamples must be >= 1"),
    ],
)
def test_config_errors(tmp_path, kwargs, match):
    with pytest.raises(ShearsError, match=match):
        DeployConfig(output_dir=str(tmp_path / "o"), **kwargs)


def test_missing_model_folder(tmp_path, no_loading):
    with pytest.raises(ShearsError, match="nope"):
        check(cfg(tmp_path / "o", model=str(tmp_path / "nope")))


def test_plain_adapter_with_masked_merge_is_refused(tmp_path, tiny_tokenizer, no_loading):
    _, adapter = base_and_adapter(tmp_path, tiny_tokenizer)
    with pytest.raises(ShearsError, match="not trained mask-aware.*--merge separate"):
        check(cfg(tmp_path / "o", adapter=str(adapter), merge="masked"))
    assert not (tmp_path / "o").exists()


def test_merge_without_adapter_is_refused(tmp_path, tiny_tokenizer, no_loading):
    base = sparse_base(tmp_path, tiny_tokenizer)
    with pytest.raises(ShearsError, match="needs --adapter"):
        check(cfg(tmp_path / "o", model=str(base), merge="separate"))


def test_w8a8_sparse_without_amx(tmp_path, tiny_tokenizer, monkeypatch, no_loading, caplog):
    base = sparse_base(tmp_path, tiny_tokenizer)
    monkeypatch.setattr(deploy_run, "cpu_info", lambda: NO_AMX)
    with pytest.raises(ShearsError, match="no AMX.*--no-require-amx"):
        check(cfg(tmp_path / "o", model=str(base), precision="w8a8-sparse"))
    with caplog.at_level(logging.WARNING):  # exporting for another machine: a logged reason
        plan = check(
            cfg(tmp_path / "o", model=str(base), precision="w8a8-sparse", require_amx=False)
        )
    assert plan.cpu["amx"] is False and "no AMX" in caplog.text


def test_w8a8_sparse_for_another_machine_records_rate(tmp_path, tiny_tokenizer, monkeypatch):
    base = sparse_base(tmp_path, tiny_tokenizer)
    monkeypatch.setattr(deploy_run, "cpu_info", lambda: NO_AMX)
    r = run(
        cfg(
            tmp_path / "o",
            model=str(base),
            precision="w8a8-sparse",
            require_amx=False,
            nsamples=4,
            seqlen=16,
            verify=False,
        )
    )
    assert r["sparse_rate"] == pytest.approx(0.49)  # just below the 50 % layers
    assert r["runtime_properties"]["CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"] == r["sparse_rate"]
    if not _host_has_amx():  # the counters tell the truth: no sparse kernel without AMX
        assert r["sparse_kernel"]["sparse_kernel_layers"] == 0


def _host_has_amx() -> bool:
    from shears.deploy.cpu import cpu_info

    return bool(cpu_info()["amx"])


def test_dense_model_refuses_w8a8_sparse(tmp_path, tiny_tokenizer, monkeypatch):
    from conftest import tiny_model

    folder = tmp_path / "dense"
    tiny_model("llama", tokenizer=tiny_tokenizer).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    monkeypatch.setattr(deploy_run, "cpu_info", lambda: {**NO_AMX, "amx": True})
    monkeypatch.setattr(deploy_run, "convert_to_openvino", _no_export)
    with pytest.raises(ShearsError, match="no pruned matmul layers"):
        run(cfg(tmp_path / "o", model=str(folder), precision="w8a8-sparse", nsamples=2, seqlen=8))
    assert not (tmp_path / "o").exists()


def _no_export(*a, **k):
    raise AssertionError("export started before the input was checked")


def test_cli_one_line(tmp_path, capsys, no_loading):
    out = str(tmp_path / "o")
    rc = main(["deploy", "--model", "m", "--precision", "fp16", "--output-dir", out])
    assert rc == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "ERROR" in err[0] and "unknown precision 'fp16'" in err[0], err


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["deploy", "--help"])
    text = capsys.readouterr().out
    for flag in ("--precision", "--merge", "--sparse-rate", "--require-amx", "--calibration"):
        assert flag in text
