"""Tiny sparse models (+ super-adapters) on disk for deploy tests; the deploy config they share."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "export"))
pytest.importorskip("openvino")
pytest.importorskip("nncf")

from export_helpers import make_super_adapter, sparse_tiny_model  # noqa: E402

from shears.deploy.config import DeployConfig  # noqa: E402


def sparse_base(root: Path, tokenizer, n_layers: int = 2) -> Path:
    """A tiny LLaMA (vocabulary of ``tokenizer``) with half of every decoder-linear row zero."""
    model = sparse_tiny_model("llama", n_layers, vocab_size=len(tokenizer))
    folder = root / "base"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def base_and_adapter(root: Path, tokenizer, sparse_adapter: bool = False) -> tuple[Path, Path]:
    base, adapter, _ = make_super_adapter(
        root,
        tokenizer,
        sparse_adapter=sparse_adapter,
        model_overrides={"vocab_size": len(tokenizer)},
    )
    return base, adapter


def cfg(out: Path, **kw) -> DeployConfig:
    """A fast deploy config: f32 at run time (exact comparisons), few verification tokens."""
    kw.setdefault("inference_precision", "f32")
    kw.setdefault("verify_tokens", 8)
    return DeployConfig(output_dir=str(out), **kw)
