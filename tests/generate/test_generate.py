"""``shears generate`` on tiny in-process models: greedy completions are what ``model.generate``
and ``shears eval``'s generation give, an adapter at a sub-adapter changes them, and the output
folder holds valid JSONL, the results and the config."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from input_helpers import base_with_adapter
from shears.artifacts import GENERATE_COMPLETIONS, GENERATE_CONFIG, GENERATE_RESULTS
from shears.cli import main
from shears.data.prompts import format_prompt
from shears.evaluate.extract import clean_output
from shears.evaluate.generate import generate_answers
from shears.generate.config import GenerateConfig
from shears.generate.run import run

PROMPTS = ["What is 2 + 2?", "Below is an instruction that describes a task, in more words.", "Hi"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny base and a super-adapter on it whose B is large enough to change greedy tokens."""
    from conftest import build_tiny_tokenizer

    root = tmp_path_factory.mktemp("gen")
    tok = build_tiny_tokenizer()
    base, adapter = base_with_adapter(root / "w", tok, b_scale=1.0)
    return root, str(base), str(adapter), tok


def _gen(model: str, *prompts: str, **kw) -> list[dict]:
    kw.setdefault("max_new_tokens", 8)
    cfg = GenerateConfig(model=model, prompts=list(prompts), precision="fp32", **kw)
    return run(cfg)["completions"]


@torch.no_grad()
def _reference(folder: str, tok, prompt: str, max_new: int) -> tuple[str, int]:
    """``model.generate`` greedy on one unpadded prompt: (cleaned completion, new tokens)."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = tok(format_prompt(prompt), return_tensors="pt")["input_ids"]
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    new = out[0, ids.shape[1] :].tolist()
    if tok.eos_token_id in new:
        new = new[: new.index(tok.eos_token_id) + 1]
    return clean_output(tok.decode(new, skip_special_tokens=True)), len(new)


def test_greedy_equals_model_generate_and_the_eval_path(setup):
    _, base, _, tok = setup
    got = _gen(base, *PROMPTS, batch_size=2)  # left-padded batches of different lengths
    for rec, prompt in zip(got, PROMPTS, strict=True):
        assert (rec["completion"], rec["new_tokens"]) == _reference(base, tok, prompt, 8)
        assert rec["instruction"] == prompt and rec["prompt"] == format_prompt(prompt)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    examples = [{"instruction": p} for p in PROMPTS]
    answers = generate_answers(model, tok, examples, "alpaca", batch_size=3, max_new_tokens=8)
    assert [r["completion"] for r in got] == answers
    assert any(r["completion"] for r in got) and all(r["new_tokens"] > 0 for r in got)


def test_sub_adapter_changes_the_completion(setup):
    _, base, adapter, _ = setup
    plain = _gen(base, *PROMPTS, max_new_tokens=12)
    runs = {s: _gen(base, *PROMPTS, max_new_tokens=12, adapter=adapter, sub_adapter=s)
            for s in ("max", "min")}  # fmt: skip
    texts = {k: [r["completion"] for r in v] for k, v in {"base": plain, **runs}.items()}
    assert texts["max"] != texts["base"] and texts["min"] != texts["base"]
    assert texts["max"] != texts["min"]


def test_peft_adapter_matches_the_eval_path(setup, tmp_path):
    from peft import LoraConfig, get_peft_model

    _, base, _, tok = setup
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1.0)
    peft.save_pretrained(tmp_path / "peft")
    got = [r["completion"] for r in _gen(base, *PROMPTS, adapter=str(tmp_path / "peft"))]
    examples = [{"instruction": p} for p in PROMPTS]
    assert got == generate_answers(peft.eval(), tok, examples, "alpaca", max_new_tokens=8)
    assert got != [r["completion"] for r in _gen(base, *PROMPTS)]


def test_sampling_is_seeded(setup):
    _, base, _, _ = setup
    kw = {"temperature": 1.5, "top_p": 0.95, "max_new_tokens": 12}
    a, b = _gen(base, *PROMPTS, seed=1, **kw), _gen(base, *PROMPTS, seed=1, **kw)
    assert [r["completion"] for r in a] == [r["completion"] for r in b]
    others = [_gen(base, *PROMPTS, seed=s, **kw) for s in (2, 3)]
    assert any([r["completion"] for r in o] != [r["completion"] for r in a] for o in others)


def test_cli_prints_and_writes_valid_jsonl(setup, tmp_path, capsys):
    _, base, _, _ = setup
    lines = [
        {"instruction": "Add the numbers.", "input": "2 and 3"},
        {"prompt": "Hi"},
        {"text": "x"},
    ]
    pfile = tmp_path / "prompts.jsonl"
    pfile.write_text("".join(json.dumps(r) + "\n" for r in lines) + "\n")
    out = tmp_path / "out"
    argv = ["generate", "--model", base, "--prompts-file", str(pfile), "--max-new-tokens", "6",
            "--precision", "fp32", "--output-dir", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    recs = [json.loads(ln) for ln in (out / GENERATE_COMPLETIONS).read_text().splitlines()]
    assert [r["instruction"] for r in recs] == ["Add the numbers.", "Hi", "x"]
    assert recs[0]["input"] == "2 and 3" and "### Input:\n2 and 3" in recs[0]["prompt"]
    keys = {"index", "instruction", "input", "prompt", "completion", "new_tokens",
            "batch_time_s", "tokens_per_s"}  # fmt: skip
    assert all(set(r) == keys and 0 < r["new_tokens"] <= 6 for r in recs)
    assert all(r["tokens_per_s"] > 0 and r["batch_time_s"] > 0 for r in recs)
    assert printed.count("=== [") == 3 and "=== [2/3] Hi\n" in printed
    res = json.loads((out / GENERATE_RESULTS).read_text())
    assert res["num_prompts"] == 3 and res["new_tokens"] == sum(r["new_tokens"] for r in recs)
    assert res["decoding"] == "greedy" and res["tokens_per_s"] > 0
    assert json.loads((out / GENERATE_CONFIG).read_text())["prompts_file"] == str(pfile)
    assert main([*argv, "--overwrite"]) == 0  # its own output: replaced
    assert (out / GENERATE_RESULTS).is_file()


def test_txt_prompts_file(setup, tmp_path):
    _, base, _, _ = setup
    pfile = tmp_path / "p.txt"
    pfile.write_text("first\n\n  second  \n")
    res = run(GenerateConfig(model=base, prompts_file=str(pfile), max_new_tokens=2))
    assert [r["instruction"] for r in res["completions"]] == ["first", "second"]
    assert res["prompt_style"] == "alpaca"


def test_prompt_style_defaults_to_the_adapters(tmp_path):
    """An adapter trained with the chat style generates with it unless --prompt-style says."""
    from conftest import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.chat_template = "{% for m in messages %}<u>{{ m['content'] }}</u>{% endfor %}<a>"
    base, adapter = base_with_adapter(tmp_path / "w", tok)
    train_cfg = json.loads((adapter / "train_config.json").read_text())
    (adapter / "train_config.json").write_text(json.dumps({**train_cfg, "prompt_style": "chat"}))
    kw = {"model": str(base), "adapter": str(adapter), "prompts": ["hi"], "max_new_tokens": 2}
    res = run(GenerateConfig(**kw))
    assert res["prompt_style"] == "chat" and res["completions"][0]["prompt"] == "<u>hi</u><a>"
    assert res["sub_adapter"]["name"] == "heuristic" and res["adapter_kind"] == "super"
    assert run(GenerateConfig(**kw, prompt_style="alpaca"))["prompt_style"] == "alpaca"
