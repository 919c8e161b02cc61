"""``shears train``: a cutoff_len above the model's positions is one clear error before any
example is tokenized (GPT-2 used to fail with an IndexError on a long example, LLaMA trained on
past its context)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from nls_worker import make_config, make_examples  # noqa: E402

import shears.train.run as train_run  # noqa: E402
from context_helpers import LONG_QUESTION, cli, error_lines, short_folder, write_json  # noqa: E402
from shears.adapters import ElasticLoraConfig, SpaceConfig  # noqa: E402
from shears.errors import ShearsError  # noqa: E402
from shears.train import train_nls  # noqa: E402

GPT2_SPACE = {"targets": ["c_attn", "c_fc"], "groups": [], "widths": [4, 2], "alpha": 8.0}
LLAMA_SPACE = {"targets": ["q_proj", "v_proj"], "groups": [], "widths": [4, 2], "alpha": 8.0}


@pytest.mark.parametrize(
    ("arch", "space", "key"),
    [("gpt2", GPT2_SPACE, "n_positions"), ("llama", LLAMA_SPACE, "max_position_embeddings")],
)
def test_cli_cutoff_len_above_positions(tmp_path, tiny_tokenizer, capsys, arch, space, key):
    model = short_folder(tmp_path / "m", tiny_tokenizer, arch)
    long = [{"instruction": LONG_QUESTION, "output": "The answer is 4."}] * 4
    data = write_json(tmp_path / "long.json", long)
    (tmp_path / "space.json").write_text(json.dumps(space))
    out = tmp_path / "out"
    rc = cli(
        ["train", "--model", model, "--data", data, "--space-config", str(tmp_path / "space.json")]
        + ["--cutoff-len", "100000", "--max-steps", "1", "--batch-size", "2", "--grad-accum", "1"]
        + ["--output-dir", str(out)]
    )
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert rc == 2 and "Traceback" not in err and len(lines) == 1
    assert lines[0].endswith(
        f"--cutoff-len 100000 exceeds the model's 64 positions ({key}); use --cutoff-len <= 64"
    )
    assert not out.exists()


def test_train_nls_checks_the_loaded_model_before_tokenizing(tmp_path, monkeypatch):
    """A model whose limit is known only once loaded (GGUF, hub id): train_nls checks it."""
    from nls_worker import make_tokenizer

    from conftest import tiny_model

    def boom(*a, **k):
        raise AssertionError("examples were tokenized before the context check")

    monkeypatch.setattr(train_run, "encode_examples", boom)
    tok = make_tokenizer()
    model = tiny_model("llama", tokenizer=tok, max_positions=64)
    cfg = make_config(
        str(tmp_path / "out"),
        cutoff_len=65,
        adapter=ElasticLoraConfig(targets=LLAMA_SPACE["targets"], alpha=LLAMA_SPACE["alpha"]),
        space=SpaceConfig(groups=LLAMA_SPACE["groups"], widths=LLAMA_SPACE["widths"]),
    )
    with pytest.raises(ShearsError, match=r"--cutoff-len 65 exceeds the model's 64 positions"):
        train_nls(model, tok, make_examples(4), cfg)
    assert not (tmp_path / "out").exists()
