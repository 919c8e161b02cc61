"""Benchmark ``shears prune`` on SmolLM2-135M: seconds, peak RSS, dense and pruned perplexity.

``seconds`` are wall-clock; ``*_cpu_seconds`` are this process's CPU time (more telling on a
shared machine). Every method runs in its own subprocess (so peak RSS is that method's), on the same calibration
windows and the same held-out text (the offline default streams). Prints one JSON object.

    .venv/bin/python bench/prune.py                      # the issue's setting: 50 %, 128 x 512
    .venv/bin/python bench/prune.py --nsamples 32 --seqlen 256 --ppl-tokens 8192   # quicker
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time


def run_one(args: argparse.Namespace) -> dict:
    import torch

    from shears.data.calibration import heldout_ids
    from shears.evaluate.perplexity import perplexity
    from shears.models import load_model
    from shears.prune import PruneConfig, prune_model
    from shears.prune.stream import load_dtype_name
    from shears.utils import peak_memory, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.offload == "cpu":  # weights in CPU memory, one block at a time on --device
        probe = PruneConfig(dtype=args.dtype, device=args.device)
        dtype = load_dtype_name(probe, resolve_device(args.device))
        model, tok = load_model(args.model, dtype=dtype, device="cpu")
    else:
        model, tok = load_model(args.model, dtype=args.dtype, device=args.device)
    load_s = time.perf_counter() - t0
    held = heldout_ids(tok, "default", args.ppl_tokens)
    out: dict = {"load_seconds": round(load_s, 2)}
    if args.one != "dense":
        cfg = PruneConfig(
            model=args.model,
            method=args.one,
            sparsity=args.sparsity,
            pattern=args.pattern,
            nsamples=args.nsamples,
            seqlen=args.seqlen,
            batch_size=args.batch_size,
            seed=0,
            device=args.device,
            precision=args.precision,
            offload=args.offload,
        )
        c0 = time.process_time()
        report = prune_model(model, tok, cfg, progress=False)
        out["prune_cpu_seconds"] = round(time.process_time() - c0, 2)
        out.update(
            seconds=report.seconds["prune"],
            calibration_data_seconds=report.seconds["calibration_data"],
            target_sparsity=round(report.targets["sparsity"], 6),
            nonzero_parameters=report.model_parameters["nonzero_parameters"],
            autocast=report.autocast,
            device_memory=report.device_memory,
        )
    t1, c1 = time.perf_counter(), time.process_time()
    out["ppl"] = round(perplexity(model, tok, held, args.ppl_seqlen, batch_size=1), 4)
    out["ppl_seconds"] = round(time.perf_counter() - t1, 2)
    out["ppl_cpu_seconds"] = round(time.process_time() - c1, 2)
    out["ppl_tokens"] = int(held.numel())
    out["peak_rss_mib"] = peak_memory()["peak_rss_mib"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--methods", default="wanda,magnitude,sparsegpt")
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--pattern", default="unstructured")
    p.add_argument("--nsamples", type=int, default=128)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--ppl-tokens", type=int, default=16384)
    p.add_argument("--ppl-seqlen", type=int, default=512)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", help="calibration passes: auto, fp32, bf16")
    p.add_argument(
        "--offload",
        default="none",
        choices=("none", "cpu"),
        help="cpu: the model in CPU memory, one block at a time on --device (perplexity on CPU)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one method in this process
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if args.one:
        sys.stdout.write(json.dumps(run_one(args)) + "\n")
        return

    settings = {k: v for k, v in vars(args).items() if k not in ("one", "methods")}
    result: dict = {"settings": settings, "cpu_count": os.cpu_count(), "results": {}}
    for method in ["dense", *args.methods.split(",")]:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--one", method]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            result["results"][method] = {"error": proc.stderr.strip().splitlines()[-1:]}
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["wall_seconds"] = round(time.perf_counter() - t0, 2)
        result["results"][method] = row
        print(f"{method}: {json.dumps(row)}", file=sys.stderr, flush=True)
    dense = result["results"].get("dense", {}).get("ppl")
    result["dense_ppl"] = dense
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
