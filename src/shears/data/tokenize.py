"""Turn examples into token ids with loss labels; pad batches. Shared by training, search and eval."""

from __future__ import annotations

import torch

from shears.data.prompts import format_prompt

IGNORE_INDEX = -100


def encode_example(
    tokenizer,
    example: dict,
    style: str = "alpaca",
    cutoff_len: int = 256,
    train_on_inputs: bool = True,
    add_eos: bool = True,
) -> dict[str, list[int]]:
    """Tokenise ``prompt + output`` (LLM-Adapters style).

    Truncates to ``cutoff_len`` tokens; appends EOS when there is room. ``labels`` equal the ids
    (loss on the whole text, the paper's ``train_on_inputs``) or have the prompt part set to -100.
    Returns ``input_ids``, ``attention_mask``, ``labels`` and ``prompt_len`` (tokens of the prompt).
    """
    prompt = format_prompt(example["instruction"], example.get("input", ""), style, tokenizer)
    special = style != "chat"  # a chat template already holds its special tokens
    prompt_ids = tokenizer(prompt, add_special_tokens=special)["input_ids"]
    full_ids = tokenizer(prompt + example.get("output", ""), add_special_tokens=special)[
        "input_ids"
    ]
    full_ids = full_ids[:cutoff_len]
    eos = tokenizer.eos_token_id
    if (
        add_eos
        and eos is not None
        and len(full_ids) < cutoff_len
        and (not full_ids or full_ids[-1] != eos)
    ):
        full_ids = full_ids + [eos]
    labels = list(full_ids)
    n_prompt = min(len(prompt_ids), len(full_ids))
    if not train_on_inputs:
        labels[:n_prompt] = [IGNORE_INDEX] * n_prompt
    return {
        "input_ids": full_ids,
        "attention_mask": [1] * len(full_ids),
        "labels": labels,
        "prompt_len": n_prompt,
    }


def pad_batch(features: list[dict], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Pad ``input_ids`` / ``attention_mask`` / ``labels`` of a list of encoded examples.

    Returns (batch, max_len) long tensors; labels are padded with -100.
    """
    width = max(len(f["input_ids"]) for f in features)
    out: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
    for f in features:
        n = width - len(f["input_ids"])
        pads = {"input_ids": [pad_id] * n, "attention_mask": [0] * n, "labels": [IGNORE_INDEX] * n}
        for key in out:
            seq = f.get(key, f["input_ids"] if key == "labels" else None)
            out[key].append(pads[key] + list(seq) if side == "left" else list(seq) + pads[key])
    return {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
