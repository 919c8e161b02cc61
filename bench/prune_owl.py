"""Perplexity of uniform vs OWL layer-wise sparsity (``--sparsity-profile owl``) on SmolLM2-135M.

One process: the model is loaded once and its dense weights restored before every run; every run
uses the same calibration windows and held-out text (the offline default streams). Prints one
JSON object (settings, dense perplexity, per sparsity and profile: perplexity, seconds, and the
OWL block sparsities).

    .venv/bin/python bench/prune_owl.py --nsamples 32 --seqlen 256 --ppl-tokens 4096
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--method", default="wanda")
    p.add_argument("--sparsities", default="0.5,0.6,0.7")
    p.add_argument("--nsamples", type=int, default=32)
    p.add_argument("--seqlen", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--ppl-tokens", type=int, default=4096)
    p.add_argument("--ppl-seqlen", type=int, default=512)
    p.add_argument("--owl-m", type=float, default=5.0)
    p.add_argument("--owl-lambda", type=float, default=0.08)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()

    import torch

    from shears.data.calibration import heldout_ids
    from shears.evaluate.perplexity import perplexity
    from shears.models import load_model
    from shears.prune import PruneConfig, prune_model
    from shears.prune.run import build_calibration

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)
    dense = {k: v.detach().clone() for k, v in model.state_dict().items()}
    held = heldout_ids(tok, "default", args.ppl_tokens)

    def ppl() -> float:
        return round(perplexity(model, tok, held, args.ppl_seqlen, batch_size=1), 4)

    out: dict = {"settings": vars(args), "cpu_count": os.cpu_count(), "dense_ppl": ppl()}
    ids = None
    for s in (float(x) for x in args.sparsities.split(",")):
        for profile in ("uniform", "owl"):
            model.load_state_dict(dense)
            cfg = PruneConfig(
                model=args.model,
                method=args.method,
                sparsity=s,
                sparsity_profile=profile,
                owl_m=args.owl_m,
                owl_lambda=args.owl_lambda,
                nsamples=args.nsamples,
                seqlen=args.seqlen,
                batch_size=args.batch_size,
            )
            ids = build_calibration(tok, cfg) if ids is None else ids
            t0 = time.perf_counter()
            report = prune_model(model, tok, cfg, calibration=ids, progress=False)
            row = {
                "prune_seconds": round(time.perf_counter() - t0, 1),
                "target_sparsity": round(report.targets["sparsity"], 5),
                "ppl": ppl(),
            }
            if report.profile is not None:
                row["block_sparsity"] = [round(b["sparsity"], 4) for b in report.profile]
                row["outlier_ratio"] = [round(b["outlier_ratio"], 5) for b in report.profile]
            out.setdefault(f"{s:g}", {})[profile] = row
            print(json.dumps({f"{s:g}": {profile: row}}), flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
