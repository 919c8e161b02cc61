"""Helpers for the bad-input tests: the CLI run in-process with its stderr lines, files that are
not what they claim to be, and a tiny base model with a super-adapter on disk."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from conftest import tiny_model

# JSON records saved in Latin-1 (the 0xe9 of "café" is not UTF-8)
LATIN1_JSON = '[{"instruction": "caf\xe9?", "output": "The answer is 1", "answer": "1"}]'.encode(
    "latin-1"
)
PROGRESS = re.compile(r"\d+%\|")  # a tqdm progress bar (transformers' weight loading)
BINARY = bytes(range(256)) * 16  # NUL bytes and invalid UTF-8
ROWS = [
    {
        "instruction": f"What is {i} + {i}?",
        "output": f"The answer is {2 * i}.",
        "answer": str(2 * i),
    }
    for i in range(12)
]


def shears(capsys, *argv: object) -> tuple[int, list[str]]:
    """Run ``shears.cli.main`` in-process at log level WARNING: ``(exit code, non-empty stderr
    lines)``, progress bars left out. An exception escaping ``main`` (a traceback for the user)
    fails the test."""
    from shears.cli import main

    capsys.readouterr()
    rc = main(["--log-level", "WARNING", *map(str, argv)])
    lines = capsys.readouterr().err.splitlines()
    return rc, [line for line in lines if line.strip() and not PROGRESS.search(line)]


def one_error(capsys, *argv: object, match: str) -> str:
    """Run the CLI and check the input is refused: exit code 2 and one ERROR line holding
    ``match``; returns that line."""
    rc, lines = shears(capsys, *argv)
    assert rc == 2, lines
    assert len(lines) == 1 and " ERROR " in lines[0], lines
    assert match in lines[0], lines[0]
    return lines[0]


def write(path: Path, data: bytes | str | list | dict) -> str:
    """Write bytes, text, or JSON (lists and dicts) to ``path``; returns it as a string."""
    if isinstance(data, (list, dict)):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return str(path)


def base_with_adapter(
    root: Path, tokenizer, seed: int = 0, b_scale: float = 0.05
) -> tuple[Path, Path]:
    """A tiny LLaMA saved in ``root/model`` and a super-adapter on it (random non-zero B, widths
    8/6/4 on q/v/up; B ~ N(0, ``b_scale``)) in ``root/adapter``, with a ``train_config.json`` naming
    ``root/data.json``."""
    from shears.adapters import ElasticLoraConfig, SpaceConfig, SuperAdapter
    from shears.models import save_model

    root.mkdir(parents=True, exist_ok=True)
    model = tiny_model("llama", seed=seed, tokenizer=tokenizer, max_positions=1024)
    save_model(model, tokenizer, root / "model")
    cfg = ElasticLoraConfig(targets=["q_proj", "v_proj", "up_proj"])
    adapter = SuperAdapter.create(
        model, cfg, SpaceConfig(groups=[], widths=[8, 6, 4]), base_model=str(root / "model")
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in adapter.layers.values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=gen) * b_scale)
    adapter.save(root / "adapter")
    write(root / "data.json", ROWS)
    train_cfg = {"model": str(root / "model"), "data": str(root / "data.json"), "train_size": 6}
    write(root / "adapter" / "train_config.json", train_cfg)
    return root / "model", root / "adapter"
