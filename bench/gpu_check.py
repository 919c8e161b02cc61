"""The paper-scale pieces at reduced size, on whatever device is there (issue 14): one JSON line.

A random LLaMA at LLaMA-7B widths (hidden 4096, MLP 11008, 32 heads; ``--layers`` blocks, 4 by
default: about 1.2 B parameters with a 32k vocabulary), saved in bf16, then the real CLI stages
in fresh processes, each with its own peak memory:

1. ``shears prune`` (Wanda 50 %, ``--nsamples`` x ``--seqlen`` calibration tokens);
2. ``shears train`` (NLS, ``--steps`` steps in bf16 mixed precision, widths [32, 24, 16]);
3. ``shears search`` (one hill-climbing turn on the validation answer loss);
4. ``shears export`` (the searched sub-adapter as a PEFT adapter), then stock ``peft`` loads it
   on the pruned base and runs one forward pass.

Needs no network: the tokenizer is a byte-level BPE trained in-process, the calibration text and
the arithmetic task are written by the script. ``--smoke`` shrinks everything (widths 64, two
blocks) so the script itself is tested on a CPU (tests/bench/test_gpu_check.py).

    bash bench/gpu_check.sh            # on a CUDA machine; prints one JSON line, < 8 min on 1 GPU
    bash bench/gpu_check.sh --smoke    # anywhere, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parent.parent / "src"

SIZES: dict[str, dict[str, int]] = {
    "7b-widths": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32000,
    },
    "smoke": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 512,
    },
}


def _examples(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` two-term additions in the Alpaca format (instruction, output, answer)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        out.append(
            {
                "instruction": f"What is {a} + {b}?",
                "input": "",
                "output": f"{a + b}",
                "answer": f"{a + b}",
            }
        )
    return out


def _tokenizer(texts: list[str], vocab: int):  # noqa: ANN202 - a transformers tokenizer
    """A byte-level BPE trained on ``texts`` (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab, 4000),
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")


def build_inputs(work: Path, size: str, layers: int, seqlen: int) -> dict[str, Any]:
    """The random model (bf16 safetensors + tokenizer), the task files and the calibration text
    under ``work``; returns what was built."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    train, val = _examples(512, 0), _examples(64, 1)
    (work / "train.json").write_text(json.dumps(train))
    (work / "val.json").write_text(json.dumps(val))
    prose = [
        "Below is an instruction that describes a task. Write a response that appropriately "
        f"completes the request.\n\n### Instruction:\n{e['instruction']}\n\n### Response:\n"
        f"The answer is {e['output']}. Adding two numbers means counting on from the first."
        for e in train
    ]
    text = " ".join(prose)
    while len(text.split()) < 4 * seqlen * 64:
        text += " " + text
    (work / "calibration.txt").write_text(text)
    tok = _tokenizer(prose, SIZES[size]["vocab_size"])
    cfg = LlamaConfig(
        **SIZES[size],
        num_hidden_layers=layers,
        max_position_embeddings=max(2048, seqlen),
        tie_word_embeddings=False,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(work / "model")
    tok.save_pretrained(work / "model")
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": layers,
        **SIZES[size],
    }


def _stage(name: str, args: list[str], out: Path, results: str) -> dict[str, Any]:
    """Runs ``python -m shears <args>`` and reads its wall time and peak memory."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "shears", *args], env=env, capture_output=True, text=True
    )
    wall = round(time.perf_counter() - t0, 1)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    data = json.loads((out / results).read_text())
    peak = data.get("peak_memory") or {}
    return {
        "wall_s": wall,
        "peak_cuda_mib": data.get("peak_cuda_mib", peak.get("peak_cuda_mib")),
        "peak_rss_mib": data.get("peak_rss_mib", peak.get("peak_rss_mib")),
    }


def run(work: Path, a: argparse.Namespace) -> dict[str, Any]:
    """Every stage on ``work``; the JSON record."""
    t0 = time.perf_counter()
    model = build_inputs(work, a.size, a.layers, a.seqlen)
    stages: dict[str, Any] = {"build_s": round(time.perf_counter() - t0, 1)}
    dev = ["--device", a.device]
    stages["prune"] = _stage(
        "prune",
        ["prune", "--model", str(work / "model"), "--output-dir", str(work / "pruned"),
         "--sparsity", "0.5", "--calibration", str(work / "calibration.txt"),
         "--nsamples", str(a.nsamples), "--seqlen", str(a.seqlen), "--no-plot", *dev],
        work / "pruned", "prune_report.json",
    )  # fmt: skip
    prec = "fp32" if a.size == "smoke" else "bf16"
    stages["train"] = _stage(
        "train",
        ["train", "--model", str(work / "pruned"), "--data", str(work / "train.json"),
         "--output-dir", str(work / "adapter"), "--max-steps", str(a.steps),
         "--batch-size", str(a.batch), "--cutoff-len", "128", "--save-steps", str(a.steps),
         "--precision", prec, "--prompt-style", "alpaca", *dev],
        work / "adapter", "train_results.json",
    )  # fmt: skip
    stages["search"] = _stage(
        "search",
        ["search", "--adapter", str(work / "adapter"), "--model", str(work / "pruned"),
         "--output-dir", str(work / "search"), "--data", str(work / "val.json"),
         "--algorithm", "hill-climbing", "--max-turns", "1", "--budget", "8",
         "--val-size", "16", "--no-plots", *dev],
        work / "search", "search_results.json",
    )  # fmt: skip
    stages["export"] = _stage(
        "export",
        ["export", "--adapter", str(work / "adapter"), "--model", str(work / "pruned"),
         "--output-dir", str(work / "export"),
         "--sub-adapter", str(work / "search" / "search_results.json"), *dev],
        work / "export", "export_results.json",
    )  # fmt: skip
    stages["peft_load"] = peft_forward(work, a.device)
    return {"model": model, "stages": stages}


def peft_forward(work: Path, device: str) -> dict[str, Any]:
    """Stock PEFT loads the exported adapter on the pruned base; one forward pass."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dev = "cuda" if device == "auto" and torch.cuda.is_available() else device
    dev = "cpu" if dev == "auto" else dev
    t0 = time.perf_counter()
    base = AutoModelForCausalLM.from_pretrained(work / "pruned", dtype=torch.bfloat16).to(dev)
    model = PeftModel.from_pretrained(base, work / "export")
    ids = torch.arange(1, 33, device=dev)[None]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    return {"wall_s": round(time.perf_counter() - t0, 1), "finite": bool(logits.isfinite().all())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny widths, 2 blocks: tests the script")
    ap.add_argument("--layers", type=int, default=4, help="decoder blocks at 7B widths")
    ap.add_argument("--nsamples", type=int, default=64, help="calibration windows")
    ap.add_argument("--seqlen", type=int, default=1024, help="tokens per calibration window")
    ap.add_argument("--steps", type=int, default=20, help="NLS optimizer steps")
    ap.add_argument("--batch", type=int, default=8, help="examples per NLS step")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    a = ap.parse_args(argv)
    a.size = "smoke" if a.smoke else "7b-widths"
    if a.smoke:
        a.layers, a.nsamples, a.seqlen, a.steps, a.batch = 2, 4, 64, 2, 2

    import torch

    record: dict[str, Any] = {
        "check": "gpu_check",
        "size": a.size,
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="shears-gpu-check-", dir=a.work) as tmp:
            record.update(run(Path(tmp), a))
        record["ok"] = True
    except Exception as exc:  # noqa: BLE001 - the record says what failed, in one line
        record["ok"], record["error"] = False, f"{type(exc).__name__}: {exc}"[-2000:]
    record["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(record))
    sys.exit(0 if record["ok"] else 1)


if __name__ == "__main__":
    main()
