"""``shears eval`` against the model's positions: ``--max-new-tokens`` that leaves no room for a
prompt and ``--ppl-seqlen`` above the limit are one clear error before the data is read; a prompt
(or a multiple-choice question) too long for the rest is cut from the left with a warning."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_model
from context_helpers import LONG_QUESTION, cli, error_lines, short_folder, warnings_of, write_json
from shears.errors import ShearsError
from shears.evaluate import run as eval_run
from shears.evaluate.choice import choice_scores
from shears.evaluate.generate import generate
from shears.evaluate.perplexity import perplexity


@pytest.fixture
def gpt2(tiny_tokenizer):
    return tiny_model("gpt2", tokenizer=tiny_tokenizer, max_positions=64)


def _math(tmp_path, question="What is 2 + 2?"):
    return write_json(tmp_path / "math.json", [{"instruction": question, "answer": "4"}] * 2)


def test_cli_max_new_tokens_above_positions(tmp_path, tiny_tokenizer, capsys, monkeypatch):
    model = short_folder(tmp_path / "m", tiny_tokenizer)
    monkeypatch.setattr(eval_run, "prepare_tasks", lambda *a, **k: pytest.fail("data was read"))
    out = tmp_path / "out"
    rc = cli(
        ["eval", "--model", model, "--tasks", f"math:{_math(tmp_path)}", "--max-new-tokens"]
        + ["100", "--output-dir", str(out), "--no-progress"]
    )
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert rc == 2 and "Traceback" not in err and len(lines) == 1
    assert lines[0].endswith(
        "--max-new-tokens 100 exceeds the model's 64 positions (n_positions) and leaves no "
        "position for a prompt; use --max-new-tokens <= 63"
    )
    assert not (out / "eval_results.json").exists()


def test_cli_ppl_seqlen_above_positions(tmp_path, tiny_tokenizer, capsys):
    model = short_folder(tmp_path / "m", tiny_tokenizer)
    (tmp_path / "held.txt").write_text("the answer is 42. " * 100)
    rc = cli(
        ["eval", "--model", model, "--tasks", f"ppl:{tmp_path / 'held.txt'}", "--ppl-seqlen"]
        + ["100", "--output-dir", str(tmp_path / "out"), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert (
        "--ppl-seqlen 100 exceeds the model's 64 positions (n_positions); use --ppl-seqlen <= 64"
        in err
    )


def test_cli_long_prompt_is_cut_from_the_left(tmp_path, tiny_tokenizer, capsys):
    model = short_folder(tmp_path / "m", tiny_tokenizer)
    out = tmp_path / "out"
    rc = cli(
        ["eval", "--model", model, "--tasks", f"math:{_math(tmp_path, LONG_QUESTION)}"]
        + ["--max-new-tokens", "8", "--output-dir", str(out), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "2 of 2 prompts are longer than the model's 64 positions (n_positions) less " in err
    res = json.loads((out / "eval_results.json").read_text())
    assert res["tasks"]["math"]["count"] == 2


def test_help_documents_the_truncation(capsys):
    from shears.cli import main

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "cut from the left" in text and "question tokens from the left" in text


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_generate_cuts_long_prompts_from_the_left(tiny_tokenizer, arch):
    model = tiny_model(arch, tokenizer=tiny_tokenizer, max_positions=64)
    tok = tiny_tokenizer
    ids = tok(LONG_QUESTION)["input_ids"]
    assert len(ids) > 64
    with warnings_of("shears.evaluate.generate") as got:
        res = generate(model, tok, [LONG_QUESTION, "Hi"], "alpaca", batch_size=2, max_new_tokens=8)
    assert res.truncated_prompts == 1 and len(got) == 1 and "cut from the left" in got[0]
    # the same answer as generating from the prompt's last 64 - 8 tokens
    alone = generate(model, tok, [tok.decode(ids[-56:])], "alpaca", max_new_tokens=8)
    assert tok(tok.decode(ids[-56:]))["input_ids"] == ids[-56:]
    assert res.texts[0] == alone.texts[0]


def test_generate_refuses_max_new_tokens_without_room(gpt2, tiny_tokenizer):
    with pytest.raises(ShearsError, match=r"--max-new-tokens 64 exceeds the model's 64 positions"):
        generate(gpt2, tiny_tokenizer, ["Hi"], max_new_tokens=64)


def test_choice_context_cut_from_the_left_with_a_warning(gpt2, tiny_tokenizer):
    ex = [{"instruction": LONG_QUESTION, "choices": ["4", "5"], "label": 0}]
    with warnings_of("shears.evaluate.choice") as got:
        scores = choice_scores(gpt2, tiny_tokenizer, ex)
    assert len(got) == 1 and "2 of 2 multiple-choice requests" in got[0]
    assert all(torch.isfinite(torch.tensor(s)).all() for s in scores)


def test_choice_longer_than_the_model_is_an_error(gpt2, tiny_tokenizer):
    ex = [{"instruction": "Pick one.", "choices": ["4", "x " * 80], "label": 0}]
    with pytest.raises(ShearsError, match=r"the choice 'x x x.* exceeds the model's 64 positions"):
        choice_scores(gpt2, tiny_tokenizer, ex)


def test_perplexity_seqlen_above_positions(gpt2, tiny_tokenizer):
    ids = torch.randint(0, 100, (200,))
    with pytest.raises(ShearsError, match=r"seqlen 100 exceeds the model's 64 positions"):
        perplexity(gpt2, tiny_tokenizer, ids, seqlen=100)
    assert perplexity(gpt2, tiny_tokenizer, ids, seqlen=64) > 1
