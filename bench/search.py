"""Benchmark of the sub-adapter search on SmolLM2-135M (CPU-friendly sizes by default).

Prints (and writes with --out) JSON with:
- ``speed``: seconds per evaluation and evaluations per minute of the answer-token loss, naive
  (full forward, logits everywhere) vs logit gathering vs gathering + reuse of the blocks below the
  changed group (hill-climbing neighbours), plus the cost of one first-order screening pass;
  the largest difference between their losses (they are exact);
- ``turn``: one full hill-climbing turn at the heuristic (every neighbour evaluated exactly)
  against first-order screening: rank correlation of estimates and exact losses, whether the
  screened top-k holds the true best neighbour, and the time of each;
- ``algorithms``: best objective against evaluations spent for heuristic, random, hill-climbing
  (screened and exhaustive) and evolutionary at the same budget.

Needs a super-adapter: ``--adapter DIR`` (a `shears train` output), else one is trained briefly
(``--train-steps``) into ``--work``.

    .venv/bin/python bench/search.py --val-size 8 --budget 40 --out bench_search.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from shears.adapters.io import SuperAdapter
from shears.artifacts import read_train_settings
from shears.models import load_model
from shears.search import AnswerLossObjective, CachedEvaluator, encode_validation, run_algorithm
from shears.search.data import load_validation_examples
from shears.search.space_ops import neighbours


def train_adapter(work: Path, steps: int) -> Path:
    from shears.train import TrainConfig, run_train

    out = work / "adapter"
    if (out / "adapter_model.safetensors").is_file():
        return out
    cfg = TrainConfig(
        model="smollm2-135m",
        output_dir=str(out),
        max_steps=steps,
        batch_size=4,
        grad_accum=1,
        train_size=96,
        cutoff_len=256,
        lr=5e-4,
        save_steps=10_000,
    )
    run_train(cfg)
    return out


class Memo:
    """Share exact scores between the algorithm runs (each still counts its own evaluations)."""

    def __init__(self, obj: AnswerLossObjective) -> None:
        self.obj, self.name, self.maximize = obj, obj.name, obj.maximize
        self.scores: dict[tuple, float] = {}
        self.compute_s = 0.0

    def __call__(self, config):
        k = tuple(sorted(config.items()))
        if k not in self.scores:
            t = time.perf_counter()
            self.scores[k] = self.obj(config)
            self.compute_s += time.perf_counter() - t
        return self.scores[k]

    def set_anchor(self, config):
        t = time.perf_counter()
        self.obj.set_anchor(config)
        self.compute_s += time.perf_counter() - t

    def estimate(self, config, candidates):
        t = time.perf_counter()
        out = self.obj.estimate(config, candidates)
        self.compute_s += time.perf_counter() - t
        return out


def timed(fn, configs):
    t = time.perf_counter()
    vals = [fn(c) for c in configs]
    return (time.perf_counter() - t) / len(configs), vals


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--adapter", help="super-adapter folder (default: train one into --work)")
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/shears/bench_search"))
    ap.add_argument("--train-steps", type=int, default=24)
    ap.add_argument("--val-size", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--speed-configs", type=int, default=6, help="neighbours timed per mode")
    ap.add_argument("--budget", type=int, default=40, help="evaluations per algorithm")
    ap.add_argument("--top-k", type=int, default=8, help="screened hill-climbing: exact evals/turn")
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--skip-turn", action="store_true", help="skip the full exhaustive turn")
    ap.add_argument(
        "--turn-sample", type=int, default=0, help="evaluate only N random neighbours (0 = all)"
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    adapter = (
        Path(args.adapter) if args.adapter else train_adapter(Path(args.work), args.train_steps)
    )
    train = read_train_settings(adapter)
    style, cutoff = train.prompt_style or "alpaca", train.cutoff_len or 256
    examples = load_validation_examples(
        {
            "data": train.path("data") or "gym:gsm_symbolic",
            "data_split": "validation",
            "val_size": args.val_size,
            "data_seed": train.data_seed,
        },
        ("output",),
    )
    model, tok = load_model(train.path("model") or "smollm2-135m", "float32", "cpu")
    loaded = SuperAdapter.load(model, adapter, dropout=0.0)
    layers, space = loaded.layers, loaded.space
    model.eval()
    batches = encode_validation(tok, examples, style, cutoff, args.batch_size)
    n_tok = sum(int(b["attention_mask"].sum()) for b in batches)
    n_ans = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
    h = space.heuristic()
    nbrs = [c for _, _, c in neighbours(space, h)]
    report: dict = {
        "setup": {
            "model": train.get("model", "smollm2-135m"),
            "adapter": str(adapter),
            "train_steps": train.get("max_steps"),
            "groups": len(space.groups),
            "widths": space.groups[0].widths,
            "neighbours_of_heuristic": len(nbrs),
            "val_examples": len(examples),
            "val_tokens": n_tok,
            "answer_tokens": n_ans,
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "load_avg_at_start": os.getloadavg()[0],
        }
    }

    # ------------------------------------------------------------ speed of one evaluation
    rng = random.Random(0)
    sample = sorted(rng.sample(range(len(nbrs)), min(args.speed_configs, len(nbrs))))
    cfgs = [nbrs[i] for i in sample]
    naive = AnswerLossObjective(
        model, layers, space, batches, reuse_prefix=False, gather_logits=False
    )
    gather = AnswerLossObjective(model, layers, space, batches, reuse_prefix=False)
    fast = AnswerLossObjective(model, layers, space, batches)
    t = time.perf_counter()
    fast.set_anchor(h)
    anchor_s = time.perf_counter() - t
    s_naive, v_naive = timed(naive, cfgs)
    s_gather, v_gather = timed(gather, cfgs)
    s_fast, v_fast = timed(fast, cfgs)
    t = time.perf_counter()
    fast.estimate(h, nbrs)
    est_s = time.perf_counter() - t
    report["speed"] = {
        "naive": {"s_per_eval": round(s_naive, 3), "evals_per_min": round(60 / s_naive, 1)},
        "gather_logits": {
            "s_per_eval": round(s_gather, 3),
            "evals_per_min": round(60 / s_gather, 1),
        },
        "gather_and_reuse_prefix": {
            "s_per_eval": round(s_fast, 3),
            "evals_per_min": round(60 / s_fast, 1),
            "anchor_s_per_turn": round(anchor_s, 3),
            "note": "neighbours of the heuristic, sampled over all layers",
        },
        "speedup_vs_naive": round(s_naive / s_fast, 2),
        "first_order_estimate_of_all_neighbours_s": round(est_s, 3),
        "max_abs_loss_diff": float(
            max(
                max(abs(a - b) for a, b in zip(v_naive, v_gather, strict=True)),
                max(abs(a - b) for a, b in zip(v_naive, v_fast, strict=True)),
            )
        ),
    }
    print(json.dumps(report["speed"]), file=sys.stderr)

    memo = Memo(fast)
    # ------------------------------------------------------------ one full turn vs screening
    if not args.skip_turn:
        memo.set_anchor(h)
        if args.turn_sample and args.turn_sample < len(nbrs):
            keep = sorted(random.Random(1).sample(range(len(nbrs)), args.turn_sample))
            nbrs = [nbrs[i] for i in keep]
        t = time.perf_counter()
        exact = [memo(c) for c in nbrs]
        turn_s = time.perf_counter() - t
        t = time.perf_counter()
        est = fast.estimate(h, nbrs)
        est_s = time.perf_counter() - t
        order = np.argsort(est)
        best_i = int(np.argmin(exact))
        top = [int(i) for i in order[: args.top_k]]
        base = memo(h)
        report["turn"] = {
            "heuristic_loss": base,
            "neighbours_evaluated": len(nbrs),
            "exhaustive_turn_s": round(turn_s, 1),
            "naive_turn_s_estimated": round(s_naive * len(nbrs), 1),
            "screened_turn_s": round(est_s + s_fast * args.top_k, 1),
            "spearman_estimate_vs_exact": round(spearman(est, exact), 3),
            "sign_agreement": round(
                float(np.mean(np.sign(np.array(est) - base) == np.sign(np.array(exact) - base))), 3
            ),
            "best_neighbour_rank_by_estimate": int(np.where(order == best_i)[0][0]) + 1,
            "top_k": args.top_k,
            "top_k_holds_best": best_i in top,
            "exhaustive_best_loss": float(exact[best_i]),
            "screened_best_loss": float(min(exact[i] for i in top)),
            "neighbours_better_than_heuristic": int(sum(e < base for e in exact)),
        }
        print(json.dumps(report["turn"]), file=sys.stderr)

    # ------------------------------------------------------------ algorithms at one budget
    runs = {
        "heuristic": dict(algorithm="heuristic"),
        "random": dict(algorithm="random", seed=0),
        "hill-climbing (screened)": dict(
            algorithm="hill-climbing", screen_top_k=args.top_k, max_turns=100
        ),
        "hill-climbing (exhaustive)": dict(
            algorithm="hill-climbing", screen_top_k=0, max_turns=100
        ),
        "evolutionary": dict(
            algorithm="evolutionary", population=args.population, max_turns=100, seed=0
        ),
    }
    report["algorithms"] = {}
    for name, kw in runs.items():
        before = memo.compute_s
        ev = CachedEvaluator(space, memo, budget=args.budget)
        t = time.perf_counter()
        out = run_algorithm(ev, **kw)
        wall = time.perf_counter() - t
        curve, best = [], float("inf")
        for e in ev.history:
            best = min(best, e.score)
            curve.append(round(best, 5))
        report["algorithms"][name] = {
            "best_loss": out.best.score,
            "best_adapter_parameters": out.best.adapter_parameters,
            "evaluations": ev.n_evaluations,
            "stop_reason": out.stop_reason,
            "best_so_far_by_evaluation": curve,
            "wall_s_this_run": round(wall, 1),
            "new_compute_s": round(memo.compute_s - before, 1),
        }
        print(
            name,
            json.dumps(
                {
                    k: v
                    for k, v in report["algorithms"][name].items()
                    if k != "best_so_far_by_evaluation"
                }
            ),
            file=sys.stderr,
        )
    report["setup"]["load_avg_at_end"] = os.getloadavg()[0]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
