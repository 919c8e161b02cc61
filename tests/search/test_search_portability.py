"""`shears search` from another current folder than the one the adapter was trained in, and
--resume with the same paths spelled differently."""

import json

import pytest
import torch

from conftest import tiny_model
from shears.adapters import ElasticLoraConfig, SpaceConfig, SuperAdapter
from shears.artifacts import write_train_config
from shears.cli import main
from shears.models import save_model
from shears.train.config import TrainConfig


@pytest.fixture
def project(tmp_path, tiny_tokenizer, monkeypatch):
    """A project folder whose adapter records its base and data as cwd-relative paths (as
    `shears train --model base --data data.json --output-dir adapter` run inside it)."""
    monkeypatch.chdir(tmp_path)
    model = tiny_model("llama", tokenizer=tiny_tokenizer)
    save_model(model, tiny_tokenizer, "base")
    cfg = ElasticLoraConfig(targets=["q_proj", "v_proj"])
    space = SpaceConfig(groups=[], widths=[8, 4])
    adapter = SuperAdapter.create(model, cfg, space, base_model="base")
    with torch.no_grad():
        for lay in adapter.layers.values():
            lay.lora_B.normal_(std=0.05)
    adapter.save("adapter")
    rows = [
        {"instruction": f"What is {i} + {i}?", "output": f"The answer is {2 * i}."}
        for i in range(8)
    ]
    (tmp_path / "data.json").write_text(json.dumps(rows))
    train = TrainConfig(
        model="base", data="data.json", train_size=4, cutoff_len=200, output_dir="adapter"
    )
    write_train_config(tmp_path / "adapter", train)
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


def _search(adapter, out, *extra):
    argv = ["search", "--adapter", str(adapter), "--output-dir", str(out), "--val-size", "2"]
    return main([*argv, "--batch-size", "2", "--budget", "3", "--screen-top-k", "2", *extra])


def test_search_from_another_folder_finds_base_and_data(project, monkeypatch, capsys):
    monkeypatch.chdir(project / "elsewhere")
    assert _search(project / "adapter", "s") == 0, capsys.readouterr().err
    res = json.loads((project / "elsewhere" / "s" / "search_results.json").read_text())
    assert res["model"] == str(project.resolve() / "base")
    assert res["data"]["data"] == str(project.resolve() / "data.json")
    assert res["resolved"]["output_dir"] == str(project.resolve() / "elsewhere" / "s")


def test_resume_accepts_the_same_paths_spelled_differently(project, monkeypatch, capsys):
    assert _search("adapter", "./s", "--model", "./base", "--data", "data.json") == 0
    first = json.loads((project / "s" / "search_results.json").read_text())
    monkeypatch.chdir(project / "elsewhere")
    again = _search(
        project / "adapter",
        project / "s",
        "--model",
        str(project / "base"),
        "--data",
        "../data.json",
        "--resume",
    )
    assert again == 0, capsys.readouterr().err
    res = json.loads((project / "s" / "search_results.json").read_text())
    assert res["objective_calls"] == 0 and res["resumed_evaluations"] == res["evaluations"]
    assert res["best"] == first["best"]
