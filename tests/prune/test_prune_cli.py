"""Bad input to ``shears prune``: one clear error, before any model is loaded where possible."""

import json
import subprocess
import sys

import pytest
from prune_helpers import TEXT, tiny_model_for

from shears.cli import main
from shears.config import from_dict
from shears.errors import ShearsError
from shears.prune import PruneConfig, run_prune
from shears.prune import run as prune_run


@pytest.fixture
def no_load(monkeypatch):
    """Fail the test if a model is loaded."""

    def boom(*a, **k):
        raise AssertionError("the model was loaded before the input was validated")

    monkeypatch.setattr(prune_run, "load_model", boom)


@pytest.fixture
def model_dir(tmp_path, tiny_tokenizer):
    d = tmp_path / "tiny"
    tiny_model_for(tiny_tokenizer, "llama").save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "calib.txt"
    p.write_text(TEXT)
    return p


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sparsity": 1.0}, r"--sparsity 1.0 is outside \[0, 1\)"),
        ({"sparsity": -0.1}, r"--sparsity -0.1 is outside \[0, 1\)"),
        ({"pattern": "4:4"}, r"--pattern '4:4': N:M needs 0 < N < M"),
        ({"pattern": "5:4"}, r"--pattern '5:4': N:M needs 0 < N < M"),
        ({"pattern": "2-4"}, r"--pattern '2-4' is not 'unstructured' or N:M"),
        ({"method": "random"}, r"--method 'random' is not known; allowed: wanda, magnitude"),
        ({"nsamples": 0}, r"--nsamples 0 must be >= 1"),
        ({"seqlen": 0}, r"--seqlen 0 must be >= 1"),
        ({"batch_size": 0}, r"--batch-size 0 must be >= 1"),
    ],
)
def test_bad_values_in_config(overrides, message):
    with pytest.raises(ShearsError, match=message):
        from_dict(PruneConfig, overrides)


def test_nm_sets_sparsity():
    cfg = PruneConfig(pattern=" 2 : 4 ")
    assert (cfg.pattern, cfg.sparsity, cfg.nm) == ("2:4", 0.5, (2, 4))


def test_missing_model_and_gguf_fail_before_load(tmp_path, no_load):
    with pytest.raises(ShearsError, match="not found"):
        run_prune(PruneConfig(model=str(tmp_path / "nope"), output_dir=str(tmp_path / "o")))
    with pytest.raises(ShearsError, match="GGUF file .* does not exist"):
        run_prune(PruneConfig(model=str(tmp_path / "m.gguf"), output_dir=str(tmp_path / "o")))
    with pytest.raises(ShearsError, match="GGUF file 'x.gguf' not found"):
        run_prune(
            PruneConfig(model=str(tmp_path), gguf_file="x.gguf", output_dir=str(tmp_path / "o"))
        )


def test_existing_output_without_overwrite_fails_before_load(model_dir, tmp_path, no_load):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    for overwrite in (False, True):  # not a shears output: never replaced
        with pytest.raises(ShearsError, match="not written by shears"):
            run_prune(PruneConfig(model=str(model_dir), output_dir=str(out)), overwrite=overwrite)
    assert (out / "keep.txt").read_text() == "x"


def test_missing_calibration_file_fails_before_load(model_dir, tmp_path, no_load):
    with pytest.raises(ShearsError, match="--calibration .*missing.txt' does not exist"):
        run_prune(
            PruneConfig(
                model=str(model_dir),
                output_dir=str(tmp_path / "o"),
                calibration=str(tmp_path / "missing.txt"),
            )
        )


def test_bad_device_fails_before_load(model_dir, tmp_path, no_load):
    with pytest.raises(ShearsError, match="--device 'gpu9'"):
        run_prune(PruneConfig(model=str(model_dir), output_dir=str(tmp_path / "o"), device="gpu9"))


def _cfg(model_dir, tmp_path, text_file, **kw):
    base = dict(
        model=str(model_dir),
        output_dir=str(tmp_path / "out"),
        calibration=str(text_file),
        nsamples=2,
        seqlen=16,
    )
    return PruneConfig(**{**base, **kw})


def test_nm_width_not_divisible(model_dir, tmp_path, text_file):
    with pytest.raises(ShearsError, match=r"--pattern 2:3 needs every target's input width .* 32"):
        run_prune(_cfg(model_dir, tmp_path, text_file, pattern="2:3"), progress=False)
    assert not (tmp_path / "out").exists()


def test_targets_matching_nothing(model_dir, tmp_path, text_file):
    with pytest.raises(ShearsError, match="target 'c_attn' matches no linear layer; available:"):
        run_prune(_cfg(model_dir, tmp_path, text_file, targets=["c_attn"]), progress=False)
    with pytest.raises(ShearsError, match="leave no layer"):
        run_prune(_cfg(model_dir, tmp_path, text_file, ignore=["re:.*"]), progress=False)


def test_too_little_calibration_text(model_dir, tmp_path, text_file):
    with pytest.raises(ShearsError, match=r"gives only \d+ tokens; --nsamples 500 x --seqlen 64"):
        run_prune(_cfg(model_dir, tmp_path, text_file, nsamples=500, seqlen=64), progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_flags_config_file_and_overwrite(model_dir, tmp_path, text_file, capsys):
    conf = tmp_path / "prune.yaml"
    conf.write_text(f"model: {model_dir}\nmethod: magnitude\nsparsity: 0.3\nplot: false\n")
    out = tmp_path / "out"
    argv = ["prune", "--config", str(conf), "--output-dir", str(out), "--sparsity", "0.25"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "magnitude" and summary["sparsity"] == 0.25  # flag beats file
    assert "layers" not in summary
    report = json.loads((out / "prune_report.json").read_text())
    assert report["targets"]["sparsity"] == pytest.approx(0.25)
    assert main(argv) == 2  # exists now
    assert main([*argv, "--overwrite"]) == 0


def test_cli_prints_one_error_line_and_exits_2(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "shears",
            "prune",
            "--sparsity",
            "1.5",
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--sparsity 1.5 is outside [0, 1)" in lines[0]
