import json
from pathlib import Path

import pytest
import torch
from eval_helpers import MATH_ROWS, MC_ROWS, save_tiny_model, tiny_lm, write_json

from shears.adapters import ElasticLoraConfig, SpaceConfig, SuperAdapter
from shears.errors import ShearsError
from shears.evaluate import run as eval_run
from shears.evaluate.config import EvalConfig
from shears.evaluate.result import EvalResult
from shears.evaluate.run import run as run_eval
from shears.evaluate.suite import evaluate_model


@pytest.fixture
def setup(tmp_path, tiny_tokenizer):
    """A tiny model folder, a super-adapter for it (random B so it matters) and task files."""
    tok = tiny_tokenizer
    model_dir = save_tiny_model(tiny_lm(tok), tok, tmp_path / "model")
    model = tiny_lm(tok)
    adapter = SuperAdapter.create(
        model, ElasticLoraConfig(dropout=0.0), SpaceConfig(widths=[8, 4, 2])
    )
    torch.manual_seed(1)
    for layer in adapter.layers.values():
        torch.nn.init.normal_(layer.lora_B, std=0.5)
    adapter_dir = tmp_path / "run" / "adapter"
    adapter.save(adapter_dir)
    space = adapter.space
    math_f = write_json(tmp_path / "math.json", MATH_ROWS)
    mc_f = write_json(tmp_path / "mc.json", MC_ROWS)
    return {
        "model": model_dir,
        "adapter": str(adapter_dir),
        "space": space,
        "tasks": [f"math:{math_f}", f"mc:{mc_f}", f"mc_gen:{mc_f}"],
        "out": str(tmp_path / "eval"),
    }


def _cfg(setup, **kw):
    base = dict(
        model=setup["model"],
        tasks=setup["tasks"],
        output_dir=setup["out"],
        max_new_tokens=4,
        batch_size=2,
        progress=False,
    )
    base.update(kw)
    return EvalConfig(**base)


def test_run_eval_super_adapter_writes_results(setup):
    res = run_eval(_cfg(setup, adapter=setup["adapter"], sub_adapter="min"))
    out = json.loads(Path(setup["out"], "eval_results.json").read_text())
    assert out["tasks"].keys() == {"math", "mc_mc", "mc_mc_gen"}
    assert out["tasks"]["math"]["count"] == 3 and out["tasks"]["mc_mc"]["count"] == 3
    accs = [out["tasks"][t]["accuracy"] for t in out["tasks"]]
    assert out["mean_accuracy"] == pytest.approx(sum(accs) / 3)
    assert out["sub_adapter"]["config"] == setup["space"].minimal()
    # non-zero count at the active (min = 2) rank, adapter included
    assert out["parameters"]["adapter_parameters"] == setup["space"].adapter_parameters(
        setup["space"].minimal()
    )
    assert out["settings"]["sub_adapter"] == "min" and out["prompt_style"] == "alpaca"
    preds = [
        json.loads(x) for x in Path(setup["out"], "predictions.jsonl").read_text().splitlines()
    ]
    assert len(preds) == 9
    assert {"task", "input", "output", "extracted", "label", "correct"} <= set(preds[0])
    assert res.tasks == out["tasks"]
    assert isinstance(res, EvalResult) and res.to_dict() == out


def test_sub_adapter_changes_counts_and_json_config(setup, tmp_path):
    space = setup["space"]
    cfg_file = write_json(tmp_path / "best.json", {"best": {"config": space.maximal()}})
    big = run_eval(
        _cfg(setup, adapter=setup["adapter"], sub_adapter=cfg_file, tasks=setup["tasks"][:1])
    )
    small = run_eval(
        _cfg(setup, adapter=setup["adapter"], tasks=setup["tasks"][:1], overwrite=True)
    )  # heuristic
    diff = space.adapter_parameters(space.maximal()) - space.adapter_parameters(space.heuristic())
    assert big.parameters["parameters"] - small.parameters["parameters"] == diff


def test_no_overwrite_without_flag(setup):
    run_eval(_cfg(setup, tasks=setup["tasks"][1:2]))
    with pytest.raises(ShearsError, match="--overwrite"):
        run_eval(_cfg(setup, tasks=setup["tasks"][1:2]))
    run_eval(_cfg(setup, tasks=setup["tasks"][1:2], overwrite=True))


def _forbid_model_work(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("model work started before input was checked")

    monkeypatch.setattr("shears.models.load_model", boom)
    monkeypatch.setattr("shears.evaluate.generate.generate", boom)


@pytest.mark.parametrize(
    "sub, match",
    [
        ('{"9.q_proj+k_proj+v_proj": 8}', "unknown group '9.q_proj"),
        ("biggest", "neither heuristic/max/min nor an existing JSON file"),
    ],
)
def test_bad_sub_adapter_fails_before_loading(setup, monkeypatch, sub, match):
    _forbid_model_work(monkeypatch)
    with pytest.raises(ShearsError, match=match):
        run_eval(_cfg(setup, adapter=setup["adapter"], sub_adapter=sub))


def test_width_outside_space_fails_before_loading(setup, monkeypatch):
    _forbid_model_work(monkeypatch)
    cfg = setup["space"].maximal()
    cfg[next(iter(cfg))] = 5
    with pytest.raises(ShearsError, match="rank 5; allowed: \\[8, 4, 2\\]"):
        run_eval(_cfg(setup, adapter=setup["adapter"], sub_adapter=json.dumps(cfg)))


def test_bad_task_inputs_fail_before_loading(setup, monkeypatch, tmp_path):
    _forbid_model_work(monkeypatch)
    with pytest.raises(ShearsError, match="unknown task"):
        run_eval(_cfg(setup, tasks=["gsm9k"]))
    bad = write_json(tmp_path / "bad.json", [{"instruction": "q"}])
    with pytest.raises(ShearsError, match="no 'answer' field"):
        run_eval(_cfg(setup, tasks=[f"math:{bad}"]))


def test_adapter_that_does_not_fit(setup, tmp_path, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    from conftest import tiny_config

    cfg = tiny_config("llama")
    cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size = len(tiny_tokenizer), 48, 96
    other = save_tiny_model(
        AutoModelForCausalLM.from_config(cfg), tiny_tokenizer, tmp_path / "other"
    )
    with pytest.raises(ShearsError, match="adapter does not fit the model"):
        run_eval(_cfg(setup, model=other, adapter=setup["adapter"]))


def test_peft_adapter_folder(setup, tmp_path, tiny_tokenizer):
    from peft import LoraConfig, get_peft_model

    model = tiny_lm(tiny_tokenizer)
    pm = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    pm.save_pretrained(tmp_path / "peft")
    res = run_eval(_cfg(setup, adapter=str(tmp_path / "peft"), tasks=setup["tasks"][1:2]))
    assert res.adapter_kind == "peft"
    # q_proj 32 -> 32, v_proj 32 -> 16 (2 KV heads of 8), r = 4, 2 layers
    assert res.parameters["adapter_parameters"] == 2 * 4 * ((32 + 32) + (32 + 16))
    # one that does not fit: a target the model does not have
    pm2 = get_peft_model(tiny_lm(tiny_tokenizer), LoraConfig(r=4, target_modules=["q_proj"]))
    pm2.save_pretrained(tmp_path / "peft2")
    conf = json.loads((tmp_path / "peft2" / "adapter_config.json").read_text())
    conf["target_modules"] = ["nonexistent_proj"]
    (tmp_path / "peft2" / "adapter_config.json").write_text(json.dumps(conf))
    with pytest.raises(ShearsError, match="does not fit the model"):
        run_eval(
            _cfg(setup, adapter=str(tmp_path / "peft2"), tasks=setup["tasks"][1:2], overwrite=True)
        )


def test_prompt_style_from_train_config(setup, tmp_path):
    from pathlib import Path

    adapter = Path(setup["adapter"])
    (adapter.parent / "train_config.json").write_text(
        json.dumps({"data": {"prompt_style": "chat"}})
    )
    assert eval_run.find_prompt_style(str(adapter)) == "chat"
    assert eval_run.find_prompt_style(None) is None


def test_evaluate_model_in_memory(tiny_tokenizer, tmp_path):
    model = tiny_lm(tiny_tokenizer)
    f = write_json(tmp_path / "mc.json", MC_ROWS)
    res = evaluate_model(
        model, tiny_tokenizer, [f"mc:{f}"], EvalConfig(tasks=[f"mc:{f}"], progress=False)
    )
    assert res["tasks"]["mc_mc"]["count"] == 3 and res["mean_accuracy"] is not None
    assert len(res["predictions"]["mc_mc"]) == 3


def test_perplexity_task(tiny_tokenizer, tmp_path):
    pytest.importorskip("shears.evaluate.perplexity")
    (tmp_path / "held.txt").write_text("The answer is 42. Below is an instruction. " * 40)
    model = tiny_lm(tiny_tokenizer)
    cfg = EvalConfig(tasks=[f"ppl:{tmp_path / 'held.txt'}"], ppl_seqlen=64, progress=False)
    res = evaluate_model(model, tiny_tokenizer, cfg=cfg)
    m = res["tasks"]["held_ppl"]
    assert 1.0 < m["perplexity"] < 10 * len(tiny_tokenizer) and m["tokens"] > 64
    assert res["mean_accuracy"] is None  # perplexity is not an accuracy


def test_cli_eval_and_one_line_error(setup, capsys):
    from shears.cli import main

    rc = main(
        [
            "eval",
            "--model",
            setup["model"],
            "--tasks",
            setup["tasks"][1],
            "--output-dir",
            setup["out"],
            "--batch-size",
            "2",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["tasks"]["mc_mc"]["count"] == 3
    assert main(["eval", "--model", setup["model"], "--tasks", "nope"]) == 2
    assert main(["eval", "--model", setup["model"], "--batch-size", "0"]) == 2


def test_search_result_without_best_is_clear(setup, monkeypatch, tmp_path):
    _forbid_model_work(monkeypatch)
    f = write_json(tmp_path / "search_results.json", {"algorithm": "hill_climb", "best": None})
    with pytest.raises(ShearsError, match="holds no best config"):
        run_eval(_cfg(setup, adapter=setup["adapter"], sub_adapter=f))


def test_old_runner_module_still_imports():
    """The README documented ``shears.evaluate.runner``: it stays an alias of the new modules."""
    from shears.evaluate import runner

    assert runner.EvalConfig is EvalConfig and runner.evaluate_model is evaluate_model
    assert runner.run_eval is run_eval and runner.find_prompt_style is eval_run.find_prompt_style
