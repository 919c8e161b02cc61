"""``shears train``: every TrainConfig field is a documented flag; config files; one-line errors."""

import json
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from nls_worker import make_examples, make_model, make_tokenizer  # noqa: E402

from shears.adapters import ElasticLoraConfig, SpaceConfig  # noqa: E402
from shears.cli import build_parser, main  # noqa: E402
from shears.config import dataclass_from_args  # noqa: E402
from shears.errors import ShearsError  # noqa: E402
from shears.train import TrainConfig  # noqa: E402


def _main(argv):
    """``shears.cli.main`` with the shears log handler writing to this test's (captured) stderr:
    setup_logging binds its handler once, to the stderr of the first call."""
    import logging

    from shears.utils import setup_logging

    setup_logging()
    for h in logging.getLogger("shears").handlers:
        if type(h) is logging.StreamHandler:
            h.stream = sys.stderr  # (setStream would flush the closed old stream)
    return main(argv)


def _flags(cls):
    import dataclasses

    subs = ("adapter", "space")  # sub-configs: their fields are the flags
    return ["--" + f.name.replace("_", "-") for f in dataclasses.fields(cls) if f.name not in subs]


def test_help_documents_every_field(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    flags = _flags(TrainConfig) + _flags(ElasticLoraConfig) + _flags(SpaceConfig)
    for flag in flags + ["--config", "--space-config"]:
        assert flag in text, flag


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    tok = make_tokenizer()
    make_model(tok).save_pretrained(d)
    tok.save_pretrained(d)
    (d / "data.json").write_text(json.dumps(make_examples(8)))
    return d


def _parse(argv):
    from shears.cli.train import build_config

    return build_config(build_parser().parse_args(["train", *argv]))


def test_config_file_flags_and_space_parsing(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "lr: 0.001\nbatch_size: 2\nspace:\n  widths: [16, 8]\n  alpha: 32\n"
    )
    cfg = _parse(
        ["--config", str(tmp_path / "c.yaml"), "--batch-size", "3", "--groups", "q_proj,v_proj;up_proj",
         "--data-fields", "instruction=question,output=answer", "--no-train-on-inputs"]
    )  # fmt: skip
    assert cfg.lr == 0.001 and cfg.batch_size == 3 and not cfg.train_on_inputs
    assert cfg.space.widths == [16, 8] and cfg.adapter.alpha == 32.0
    assert cfg.space.groups == [["q_proj", "v_proj"], ["up_proj"]]
    assert cfg.data_fields == {"instruction": "question", "output": "answer"}
    assert _parse(["--groups", ""]).space.groups == []
    assert isinstance(
        dataclass_from_args(TrainConfig, build_parser().parse_args(["train"])), TrainConfig
    )


def test_adapter_and_space_layers(tmp_path, caplog):
    """--config < --space-config < flags, for the adapter keys too, in either layout; an adapter
    key under ``space`` (the layout before the split) still works, with a deprecation WARNING."""
    (tmp_path / "new.yaml").write_text(
        "adapter:\n  alpha: 32\n  targets: [q_proj]\nspace:\n  widths: [16, 8]\n"
    )
    (tmp_path / "old.yaml").write_text("space:\n  alpha: 32\n  targets: [q_proj]\n")
    (tmp_path / "flat.yaml").write_text("alpha: 8\ndropout: 0.0\nwidths: [4, 2]\n")
    (tmp_path / "sections.json").write_text(json.dumps({"adapter": {"alpha": 8}}))
    with caplog.at_level(logging.WARNING, logger="shears"):
        cfg = _parse(["--config", str(tmp_path / "new.yaml")])
    assert cfg.adapter.alpha == 32 and cfg.adapter.targets == ["q_proj"] and cfg.adapter.r_max == 16
    assert not caplog.records
    old = _parse(["--config", str(tmp_path / "old.yaml"), "--widths", "16,8"])
    assert old.adapter == cfg.adapter and old.space == cfg.space
    assert "config key 'space.alpha' is deprecated: write it as 'adapter.alpha'" in caplog.text
    both = ["--config", str(tmp_path / "old.yaml"), "--space-config", str(tmp_path / "flat.yaml")]
    cfg = _parse(both)
    assert (cfg.adapter.alpha, cfg.adapter.dropout, cfg.space.widths) == (8, 0.0, [4, 2])
    assert cfg.adapter.targets == ["q_proj"] and cfg.adapter.r_max == 4
    assert _parse([*both, "--alpha", "2"]).adapter.alpha == 2
    cfg = _parse(["--config", str(tmp_path / "old.yaml"), "--space-config",
                  str(tmp_path / "sections.json")])  # fmt: skip
    assert cfg.adapter.alpha == 8 and cfg.adapter.targets == ["q_proj"]


def test_train_config_of_either_layout():
    from shears.config import from_dict

    new = from_dict(TrainConfig, {"adapter": {"alpha": 8}, "space": {"widths": [4, 2]}})
    old = from_dict(TrainConfig, {"space": {"alpha": 8, "widths": [4, 2]}})
    assert old == new and new.adapter.alpha == 8 and new.adapter.r_max == 4
    # a space key of the old layout wins over the same key under adapter (a packaged default)
    both = from_dict(TrainConfig, {"adapter": {"alpha": 64}, "space": {"alpha": 8}})
    assert both.adapter.alpha == 8
    with pytest.raises(ShearsError, match="unknown config key 'space.colour'"):
        from_dict(TrainConfig, {"space": {"colour": 1}})
    with pytest.raises(ShearsError, match="first width must equal r_max 8"):
        TrainConfig(adapter={"r_max": 8}, space={"widths": [4, 2]})


def test_cli_trains_a_local_model_folder(model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", str(model_dir), "--data", str(model_dir / "data.json"),
            "--output-dir", str(out), "--max-steps", "2", "--batch-size", "2", "--grad-accum", "1",
            "--widths", "4,2", "--alpha", "8", "--cutoff-len", "256", "--device", "cpu"]  # fmt: skip
    assert _main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["global_steps"] == 2 and Path(summary["output_dir"]) == out
    assert (out / "adapter_model.safetensors").is_file() and (out / "loss.png").is_file()
    assert json.loads((out / "train_config.json").read_text())["space"]["widths"] == [4, 2]
    assert _main(argv) == 2  # exists, no --overwrite / --resume
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--widths", "16,32"], "sorted high to low"),
        (["--widths", ""], "widths is empty"),
        (["--widths", "16,8", "--r-max", "8"], "16 > r_max 8"),
        (["--groups", "q_proj;gate_proj"], "group ['gate_proj'] matches no target module"),
        (["--data", "missing.json"], "does not exist"),
        (["--cutoff-len", "8"], "cutoff_len 8 is too short for any example"),
        (["--lr", "abc"], "config key 'lr' must be float"),
        (["--prompt-style", "chat"], "chat template"),
    ],
)
def test_cli_bad_input_one_line_error(model_dir, tmp_path, capsys, extra, message):
    argv = ["train", "--model", str(model_dir), "--data", str(model_dir / "data.json"),
            "--output-dir", str(tmp_path / "x"), "--device", "cpu", *extra]  # fmt: skip
    assert _main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "ERROR" in line or "Traceback" in line]
    assert len(errors) == 1 and message in errors[0], err
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").glob("checkpoint-*"))


def test_cli_empty_data_file(model_dir, tmp_path, capsys):
    (tmp_path / "e.jsonl").write_text("")
    argv = ["train", "--model", str(model_dir), "--data", str(tmp_path / "e.jsonl"),
            "--output-dir", str(tmp_path / "x")]  # fmt: skip
    assert _main(argv) == 2
    assert "holds no records" in capsys.readouterr().err
