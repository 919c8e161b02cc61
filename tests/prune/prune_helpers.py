"""Helpers for the prune tests: tiny models whose vocabulary covers the tiny tokenizer."""

from conftest import tiny_model

TEXT = " ".join(
    f"Sentence {i}: the {w} number is {i * 7 % 13}, and below is an instruction that describes a task."
    for i, w in enumerate(["first", "second", "odd", "even", "last"] * 20)
)


def tiny_model_for(tokenizer, arch="llama", seed=0, layers=None):
    """``conftest.tiny_model`` with ``vocab_size = len(tokenizer)`` (the tiny byte-level BPE holds
    257 ids, more than the 128 of the tiny configs)."""
    return tiny_model(arch, seed, tokenizer=tokenizer, layers=layers)
