"""Evaluation throughput on SmolLM2-135M: greedy generation (math) and log-likelihood multiple
choice, batch size 1 vs a larger batch, and multiple choice with each prompt run once (choices
scored from its KV cache, the default) vs every choice run whole. Prints one JSON object (also written to --out).

    .venv/bin/python bench/eval.py --threads 1 --limit 8 --mc-limit 16 --batch-size 8 \
        --max-new-tokens 48

On a CPU shared with other busy processes, ``--threads 1`` is several times faster than torch's
default (a 107-token forward took ~3.6 s with 1 thread and ~20-30 s with 2 at load average ~9).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

from shears.evaluate.choice import choice_metrics, choice_scores
from shears.evaluate.generate import build_prompts, default_stop_strings, generate
from shears.evaluate.math import score_math_output
from shears.evaluate.tasks import load_task_data, parse_task
from shears.models import load_model


def bench_generation(model, tok, examples, style, batch_size, max_new_tokens):
    prompts = build_prompts(examples, style, tok)
    t0 = time.perf_counter()
    res = generate(
        model, tok, prompts, style, batch_size, max_new_tokens, default_stop_strings(style)
    )
    wall = time.perf_counter() - t0
    correct = sum(
        score_math_output(t, e["answer"])["correct"]
        for t, e in zip(res.texts, examples, strict=True)
    )
    return {
        "batch_size": batch_size,
        "examples": len(examples),
        "new_tokens": res.new_tokens,
        "wall_s": round(wall, 2),
        "tokens_per_s": round(res.new_tokens / wall, 2),
        "examples_per_s": round(len(examples) / wall, 3),
        "accuracy": correct / len(examples),
    }, res.texts


def bench_choice(model, tok, examples, style, batch_size, share_context=True):
    t0 = time.perf_counter()
    scores = choice_scores(model, tok, examples, style, batch_size, share_context=share_context)
    wall = time.perf_counter() - t0
    metrics, _ = choice_metrics(scores, examples)
    n_req = sum(len(e["choices"]) for e in examples)
    return {
        "batch_size": batch_size,
        "share_context": share_context,
        "examples": len(examples),
        "choice_requests": n_req,
        "wall_s": round(wall, 2),
        "examples_per_s": round(len(examples) / wall, 3),
        "requests_per_s": round(n_req / wall, 3),
        **metrics,
    }, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--limit", type=int, default=8, help="math problems (gsm_symbolic test split)")
    ap.add_argument("--mc-limit", type=int, default=16, help="multiple-choice questions")
    ap.add_argument(
        "--mc-task",
        default="gsm_symbolic_mc",
        help="multiple-choice task (e.g. mc:gym:family_relationships)",
    )
    ap.add_argument("--batch-size", type=int, default=16, help="the batched setting (vs 1)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--prompt-style", default="alpaca")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tok = load_model(args.model, args.dtype, args.device)
    math_ex = load_task_data(parse_task("gsm_symbolic"), args.limit)
    mc_ex = load_task_data(parse_task(args.mc_task), args.mc_limit)
    style = args.prompt_style
    # warm-up (first-call allocations, kernels)
    generate(model, tok, build_prompts(math_ex[:1], style, tok), style, 1, 2)

    def log(name, rec):
        print(f"{name}: {json.dumps(rec)}", file=sys.stderr, flush=True)

    gen1, texts1 = bench_generation(model, tok, math_ex, style, 1, args.max_new_tokens)
    log("math batch 1", gen1)
    genb, textsb = bench_generation(
        model, tok, math_ex, style, args.batch_size, args.max_new_tokens
    )
    log(f"math batch {args.batch_size}", genb)
    mc1, s1 = bench_choice(model, tok, mc_ex, style, 1)
    log("mc batch 1", mc1)
    mcb, sb = bench_choice(model, tok, mc_ex, style, args.batch_size)
    log(f"mc batch {args.batch_size}", mcb)
    mcw, sw = bench_choice(model, tok, mc_ex, style, args.batch_size, share_context=False)
    log(f"mc batch {args.batch_size}, every choice run whole", mcw)

    def max_diff(p, q):
        return max(abs(a - b) for x, y in zip(p, q, strict=True) for a, b in zip(x, y, strict=True))

    out = {
        "model": args.model,
        "device": str(next(model.parameters()).device),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "prompt_style": style,
        "max_new_tokens": args.max_new_tokens,
        "math_generation": {
            "batch_1": gen1,
            f"batch_{args.batch_size}": genb,
            "speedup": round(genb["tokens_per_s"] / gen1["tokens_per_s"], 2),
            "same_answers": texts1 == textsb,
        },
        "multiple_choice_loglik": {
            "batch_1": mc1,
            f"batch_{args.batch_size}": mcb,
            f"batch_{args.batch_size}_whole_sequences": mcw,
            "speedup": round(mcb["examples_per_s"] / mc1["examples_per_s"], 2),
            "shared_context_speedup": round(mcb["examples_per_s"] / mcw["examples_per_s"], 2),
            "max_abs_score_diff": round(max_diff(s1, sb), 6),
            "max_abs_score_diff_shared_vs_whole": round(max_diff(sb, sw), 6),
        },
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
