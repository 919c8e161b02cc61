"""Tiny deterministic NLS training run, used in-process by the tests and as a subprocess
(``python nls_worker.py``, ``torchrun --nproc_per_node 2 nls_worker.py`` or
``accelerate launch --config_file examples/accelerate/fsdp_cpu.yaml nls_worker.py``).

Not a test module (no ``test_`` prefix): it builds a tiny LLaMA whose vocabulary fits a tiny
in-process BPE tokenizer, a few arithmetic examples, and runs :func:`shears.train.train_nls`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from transformers import TrainerCallback

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/ for conftest.tiny_config


def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    text = ["Below is an instruction that describes a task. The answer is 42."] * 10
    tok.train_from_iterator(text, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")


def make_model(tokenizer, arch: str = "llama", seed: int = 0):
    """A 2-block random model of ``arch`` whose vocabulary covers ``tokenizer``."""
    from conftest import tiny_model

    return tiny_model(arch, seed, tokenizer=tokenizer)


def make_examples(n: int = 24) -> list[dict]:
    return [
        {
            "instruction": f"Add {i} and {i + 3}.",
            "input": "",
            "output": f"The answer is {2 * i + 3}.",
        }
        for i in range(n)
    ]


def make_config(out: str, **overrides):
    from shears.adapters import ElasticLoraConfig, SpaceConfig
    from shears.train import TrainConfig

    adapter = overrides.pop("adapter", None) or ElasticLoraConfig(alpha=16, dropout=0.1)
    space = overrides.pop("space", None) or SpaceConfig(widths=[8, 6, 4])
    base = dict(
        output_dir=out,
        max_steps=6,
        batch_size=2,
        grad_accum=2,
        save_steps=2,
        lr=5e-3,
        warmup=1,
        cutoff_len=256,
        adapter=adapter,
        space=space,
        device="cpu",
        # runs are compared across process layouts (DDP, FSDP, DeepSpeed, resume): fp32, since
        # bf16 autocast rounds differently when the reductions are split differently
        precision="fp32",
    )
    base.update(overrides)
    return TrainConfig(**base)


class KillAt(TrainerCallback):
    """SIGKILL this process at the end of optimizer step ``step`` (after its checkpoint; in a
    distributed run once every rank has written its part of it)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            import torch

            if torch.distributed.is_initialized():
                torch.distributed.barrier()
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonAt(TrainerCallback):
    """Turn the adapter into NaN at the start of optimizer step ``step``: training stops with a
    ShearsError and keeps the checkpoints written before (as a kill would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            import torch

            from shears.adapters import elastic_layers

            with torch.no_grad():
                for layer in elastic_layers(model).values():
                    layer.lora_A.fill_(float("nan"))


class ActiveRanks(TrainerCallback):
    """Records, at the start of every optimizer step, the active rank of every elastic layer
    (this callback runs after the NLS sampler, so it sees the sampled sub-adapter)."""

    def __init__(self) -> None:
        self.history: list[tuple[int, dict[str, int]]] = []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        from shears.adapters import elastic_layers

        ranks = {n: m.active_rank for n, m in elastic_layers(model).items()}
        self.history.append((state.global_step, ranks))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--kill-at", type=int, default=0)
    p.add_argument("--record", default="")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--precision", default="fp32")
    a = p.parse_args()
    from shears.adapters import ElasticLoraConfig
    from shears.train import train_nls

    tok = make_tokenizer()
    model = make_model(tok)
    cfg = make_config(
        a.out,
        max_steps=a.steps,
        resume=a.resume,
        batch_size=a.batch,
        precision=a.precision,
        adapter=ElasticLoraConfig(alpha=16, dropout=a.dropout),
    )
    recorder = ActiveRanks()
    callbacks = [recorder] + ([KillAt(a.kill_at)] if a.kill_at else [])
    train_nls(model, tok, make_examples(), cfg, callbacks=callbacks)
    if a.record:
        rank = int(os.environ.get("RANK", 0))
        Path(a.record).mkdir(parents=True, exist_ok=True)
        (Path(a.record) / f"configs_rank{rank}.json").write_text(json.dumps(recorder.history))
        from torch.distributed.fsdp import FSDPModule

        meta = {"fsdp": isinstance(model, FSDPModule)}
        (Path(a.record) / f"meta_rank{rank}.json").write_text(json.dumps(meta))


if __name__ == "__main__":
    main()
