"""Shared fixtures: tiny random causal LMs of several architectures, built in-process on CPU."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

# Every stage module that binds ``shears.models.load_model`` at import, imported before any test
# patches it: a module imported for the first time under a monkeypatch (e.g. a "nothing loads
# before the input is checked" fixture) would keep the patched function for the whole session.
for _module in ("shears.prune.run", "shears.export.run"):
    importlib.import_module(_module)

ARCHS = ("llama", "qwen2", "gemma3", "opt", "gpt_neox", "gpt2")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def subprocess_env() -> dict[str, str]:
    """The environment of a test's subprocess (a worker, a launcher, the CLI): this checkout's
    ``src`` first on the path, one torch thread (the same float summation order as an in-process
    run or another process layout)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def tiny_config(arch: str):
    """A 2-block config of ``arch`` with hidden 32 (seconds to build, milliseconds to run)."""
    from transformers import (
        Gemma3TextConfig,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        OPTConfig,
        Qwen2Config,
    )

    common = dict(vocab_size=128)
    if arch == "llama":
        return LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            **common,
        )
    if arch == "qwen2":
        return Qwen2Config(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            **common,
        )
    if arch == "gemma3":
        return Gemma3TextConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=256,
            sliding_window=16,
            **common,
        )
    if arch == "opt":
        return OPTConfig(
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=32,
            max_position_embeddings=256,
            **common,
        )
    if arch == "gpt_neox":
        return GPTNeoXConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=256,
            **common,
        )
    if arch == "gpt2":
        return GPT2Config(
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=256,
            bos_token_id=0,
            eos_token_id=0,
            **common,
        )
    raise ValueError(arch)


def tiny_model(
    arch: str = "llama",
    seed: int = 0,
    tokenizer=None,
    layers: int | None = None,
    max_positions: int | None = None,
) -> torch.nn.Module:
    """A random ``arch`` model from :func:`tiny_config`, in eval mode.

    ``tokenizer``: size the vocabulary to it (the tiny byte-level BPE holds 257 ids, more than the
    configs' 128) and use its EOS as GPT-2's bos/eos; ``layers``: number of blocks;
    ``max_positions``: context length (byte-level prompts are long).
    """
    cfg = tiny_config(arch)
    if tokenizer is not None:
        cfg.vocab_size = len(tokenizer)
        if arch == "gpt2":
            cfg.bos_token_id = cfg.eos_token_id = tokenizer.eos_token_id
    for key in ("num_hidden_layers", "n_layer"):
        if layers is not None and hasattr(cfg, key):
            setattr(cfg, key, layers)
    for key in ("n_positions", "max_position_embeddings"):
        if max_positions is not None and hasattr(cfg, key):
            setattr(cfg, key, max_positions)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.eval()
    return model


def active_config(space, layers) -> dict[str, int]:
    """The ``{group: rank}`` active on elastic ``layers`` (what ``space.apply`` set)."""
    return {g.name: layers[g.modules[0]].active_rank for g in space.groups}


@pytest.fixture
def tiny_llama():
    return tiny_model("llama")


@pytest.fixture
def tiny_tokenizer(tmp_path_factory):
    """A real (tiny) byte-level BPE tokenizer trained in-process, with eos/pad. Its vocabulary
    (257: the 256 byte symbols and ``<eos>``) is larger than ``tiny_model``'s 128: size the model
    with ``len(tokenizer)`` when the two meet."""
    return build_tiny_tokenizer()


def build_tiny_tokenizer():
    """The tokenizer of the ``tiny_tokenizer`` fixture (for fixtures of a wider scope)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=128,
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    text = ["The answer is 42. Below is an instruction that describes a task."] * 10
    tok.train_from_iterator(text, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")
    return fast


@pytest.fixture
def tiny_folder(tmp_path, tiny_tokenizer):
    """A tiny random LLaMA whose vocabulary fits the tiny tokenizer, saved as a HF folder."""
    folder = tmp_path / "tiny"
    tiny_model("llama", tokenizer=tiny_tokenizer, max_positions=1024).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return str(folder)
