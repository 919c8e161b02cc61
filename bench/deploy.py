"""Benchmark ``shears deploy``: where sparsity pays at run time on this CPU.

Side by side, batch-1 greedy decoding (prompt ``--prompt`` tokens, ``--new`` new tokens), each
variant in its own process (so peak RSS is its own): decode tokens/s (median over ``--rounds``),
time to first token, peak RSS, bytes on disk, and from OpenVINO's profiling counters which
matmuls ran which kernel (the sparse kernel only where the runtime says so).

Variants per size: PyTorch fp32; OpenVINO int8-weights on the dense and each sparse model;
OpenVINO W8A8 on the dense model, on each sparse model without the sparse-kernel property
(``w8a8-sparse-noprop``) and with it (``w8a8-sparse``).

Sizes: ``smollm2`` (SmolLM2-135M, real weights, pruned by ``shears prune`` with Wanda; accuracy
on the default run's task, chain_sum, and held-out perplexity, with ``--eval-limit``), ``synthetic-1b`` (a LLaMA of ~1.2 B
parameters, TinyLlama's shape, random weights pruned per row by magnitude: speed only, labelled
synthetic) and ``tiny`` (a few-MB random LLaMA, for checking this script).

    .venv/bin/python bench/deploy.py --sizes tiny --rounds 1 --new 16 --prompt 16   # check
    .venv/bin/python bench/deploy.py --sizes smollm2,synthetic-1b --out bench/results/deploy_full.json

Prints the JSON (and writes ``--out``): ``sizes.<size>.variants.<name>`` rows and a top-level
``summary`` with ``sparse_over_dense_decode_50`` / ``_70`` (W8A8 with the sparse kernel over
dense W8A8, same runtime, at the largest size run).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

EVAL_TASK = "math:gym:chain_sum?min_terms=2&max_terms=2&max_digits=2"  # shears run's default
SYNTHETIC = {  # TinyLlama-1.1B's shape (every matmul dim divisible by 64, as the kernel needs)
    "synthetic-1b": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
    ),
    "tiny": dict(
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
}
LARGER_FIRST = ("synthetic-1b", "smollm2", "tiny")


# ---------------------------------------------------------------------------- models


def _tokenizer():
    from transformers import AutoTokenizer

    from shears.models import resolve_named_default

    return AutoTokenizer.from_pretrained(resolve_named_default("smollm2-135m"))


def make_dense(size: str, folder: Path) -> None:
    """The dense fp32 model of ``size`` in ``folder`` (HF layout + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from shears.models import load_model

    if size == "smollm2":
        model, tok = load_model("smollm2-135m", dtype="float32", device="cpu")
    else:
        tok = _tokenizer()
        cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=2048, **SYNTHETIC[size])
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        with torch.no_grad():  # roughly trained-model scales, so activations stay sane
            for p in model.parameters():
                if p.dim() == 2:
                    p.normal_(0.0, 0.02)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def make_sparse(size: str, dense: Path, folder: Path, sparsity: float, args) -> None:
    """``dense`` pruned to ``sparsity``: Wanda (``shears prune``) for real weights, per-row
    magnitude for random ones."""
    import torch

    from shears.models import find_targets, load_model, weight_out_in
    from shears.prune.masks import unstructured_row_mask

    model, tok = load_model(str(dense), dtype="float32", device="cpu")
    if size == "smollm2":
        from shears.prune import PruneConfig, prune_model

        cfg = PruneConfig(
            model=str(dense),
            method=args.prune_method,
            sparsity=sparsity,
            nsamples=args.prune_nsamples,
            seqlen=args.prune_seqlen,
            seed=0,
        )
        prune_model(model, tok, cfg, progress=False)
    else:
        with torch.no_grad():
            for m in find_targets(model).values():
                w = weight_out_in(m)  # (out, in)
                w.masked_fill_(unstructured_row_mask(w.abs(), sparsity), 0.0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def deploy(
    model: Path, out: Path, precision: str, verify: bool, log: Path, w8a8_float: str = "none"
) -> dict:
    """``shears deploy`` in its own process; its ``deploy_results.json``."""
    cmd = [sys.executable, "-m", "shears", "deploy", "--model", str(model)]
    cmd += ["--output-dir", str(out), "--precision", precision, "--overwrite"]
    if precision.startswith("w8a8"):
        cmd += ["--w8a8-float", w8a8_float]
    cmd += ["--verify" if verify else "--no-verify"]
    from shears.deploy.cpu import cpu_info

    if precision == "w8a8-sparse" and not cpu_info()["amx"]:
        cmd.append("--no-require-amx")
    with log.open("a") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=fh)
    if proc.returncode != 0:
        raise RuntimeError(f"deploy {out.name} failed (see {log})")
    return json.loads((out / "deploy_results.json").read_text())


# ---------------------------------------------------------------------------- measuring


def _prompt(tok, n: int) -> list[int]:
    from shears.data.calibration import heldout_ids

    ids = heldout_ids(tok, "default", max_tokens=4 * n)[:n].tolist()
    return (ids * (n // max(len(ids), 1) + 1))[:n]


def _torch_generate(model, prompt: list[int], n: int) -> tuple[float, list[float]]:
    """TTFT and per-token decode seconds of greedy decoding with the KV cache."""
    import torch

    with torch.no_grad():
        t0 = time.perf_counter()
        out = model(input_ids=torch.tensor([prompt]), use_cache=True)
        tok = out.logits[0, -1].argmax()
        ttft, steps, cache = time.perf_counter() - t0, [], out.past_key_values
        for _ in range(n - 1):
            t = time.perf_counter()
            out = model(input_ids=tok.view(1, 1), past_key_values=cache, use_cache=True)
            cache, tok = out.past_key_values, out.logits[0, -1].argmax()
            steps.append(time.perf_counter() - t)
    return ttft, steps


def measure(args) -> dict:
    """One variant in this process: ``--measure KIND:PATH[:noprop]``."""
    kind, path, *flags = args.measure.split(":")
    from shears.utils import peak_memory

    row: dict = {}
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if kind == "torch":
        from shears.models import load_model

        model, tok = load_model(path, dtype="float32", device="cpu")
        prompt = _prompt(tok, args.prompt)
        gen = lambda: _torch_generate(model, prompt, args.new)  # noqa: E731
        row["bytes"] = sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))
    else:
        from shears.deploy.model import load_deployed
        from shears.deploy.runtime import SPARSE_RATE_KEY, OVCausalLM, kernel_report

        results = json.loads((Path(path) / "deploy_results.json").read_text())
        props = dict(results["runtime_properties"])
        if "noprop" in flags:
            props.pop(SPARSE_RATE_KEY, None)
        if args.threads:
            props["INFERENCE_NUM_THREADS"] = args.threads
        if args.streams:
            props["NUM_STREAMS"] = args.streams
        model, tok = load_deployed(path)
        model.runtime = OVCausalLM(Path(path) / "openvino_model.xml", props)
        prompt = _prompt(tok, args.prompt)

        def gen():
            g = model.runtime.generate(prompt, args.new, eos=None)
            return g.ttft_s, g.decode_s

        row["bytes"] = (Path(path) / "openvino_model.bin").stat().st_size
        row["properties"] = props
        prof = OVCausalLM(Path(path) / "openvino_model.xml", props, perf_count=True)
        prof.generate(prompt[:16], 2)  # counters of one decode step
        rep = kernel_report(prof.profiling_rows())
        row["kernels"] = {k: v for k, v in rep.items() if k != "layers"}
        del prof
    gen()  # warm-up (compilation caches, first-touch of the weights)
    ttfts, rates = [], []
    for _ in range(args.rounds):
        ttft, steps = gen()
        ttfts.append(ttft)
        rates.append(len(steps) / sum(steps))
    row.update(
        decode_tokens_per_s=round(statistics.median(rates), 3),
        decode_rounds=[round(r, 3) for r in rates],
        ttft_s=round(statistics.median(ttfts), 4),
        peak_rss_mib=peak_memory()["peak_rss_mib"],
    )
    if args.eval_limit:
        from shears.evaluate.config import EvalConfig
        from shears.evaluate.suite import evaluate_model

        ecfg = EvalConfig(
            tasks=[EVAL_TASK, "ppl"],  # the default run's task (test split) and held-out text
            limit=args.eval_limit,
            max_new_tokens=16,
            prompt_style="alpaca",
            ppl_tokens=4096,
            output_dir="unused",
            progress=False,
        )
        tasks = evaluate_model(model, tok, cfg=ecfg)["tasks"]
        row["accuracy"] = {k: v["accuracy"] for k, v in tasks.items() if "accuracy" in v}
        row["perplexity"] = {k: v["perplexity"] for k, v in tasks.items() if "perplexity" in v}
        row["eval_limit"] = args.eval_limit
    return row


def run_variant(spec: str, args, log: Path, eval_limit: int) -> dict:
    cmd = [sys.executable, __file__, "--measure", spec, "--prompt", str(args.prompt)]
    cmd += ["--new", str(args.new), "--rounds", str(args.rounds)]
    cmd += ["--threads", str(args.threads), "--streams", str(args.streams)]
    cmd += ["--eval-limit", str(eval_limit)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    with log.open("a") as fh:
        fh.write(proc.stderr)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    return row


# ---------------------------------------------------------------------------- driver


def bench_size(size: str, args, work: Path, log: Path) -> dict:
    real = size == "smollm2"
    sparsities = [float(s) for s in args.sparsities.split(",")]
    dense = work / size / "dense"
    if not (dense / "config.json").is_file():
        make_dense(size, dense)
    models = {"dense": dense}
    for s in sparsities:
        folder = work / size / f"sparse{round(100 * s)}"
        if not (folder / "config.json").is_file():
            make_sparse(size, dense, folder, s, args)
        models[f"sparse{round(100 * s)}"] = folder
    deployed, variants = {}, {}
    eval_limit = args.eval_limit if real else 0
    variants["torch-fp32-dense"] = run_variant(f"torch:{dense}", args, log, eval_limit)
    for s in sparsities:  # same dense kernels; accuracy of the PyTorch sparse model
        key = f"sparse{round(100 * s)}"
        variants[f"torch-fp32-{key}"] = run_variant(f"torch:{models[key]}", args, log, eval_limit)
    for name, folder in models.items():
        for precision in ("int8-weights", "w8a8" if name == "dense" else "w8a8-sparse"):
            out = work / size / f"ov-{precision}-{name}"
            t0 = time.perf_counter()
            done = out / "deploy_results.json"
            if args.reuse and done.is_file():  # e.g. a threads / streams rerun
                res = json.loads(done.read_text())
            else:
                res = deploy(folder, out, precision, real, log, args.w8a8_float)
            deployed[out.name] = {
                "deploy_s": round(time.perf_counter() - t0, 1),
                "ir_sparsity": res["ir_sparsity"],
                "sparse_rate": res["sparse_rate"],
                "verification": {
                    k: v
                    for k, v in (res["verification"] or {}).items()
                    if k not in ("torch_tokens", "openvino_tokens")
                },
            }
            variants[out.name] = run_variant(f"ov:{out}", args, log, eval_limit)
            if precision == "w8a8-sparse":
                noprop = f"ov-w8a8-sparse-noprop-{name}"
                variants[noprop] = run_variant(f"ov:{out}:noprop", args, log, eval_limit)
            print(f"{size} {out.name}: {json.dumps(variants[out.name])}", file=sys.stderr)
    return {
        "accuracy_vs_torch": accuracy_deltas(variants) if eval_limit else None,
        "synthetic": not real,
        "models": {k: str(v) for k, v in models.items()},
        "deployed": deployed,
        "variants": variants,
    }


def accuracy_deltas(variants: dict) -> dict:
    """Accuracy points and held-out perplexity ratio of each OpenVINO variant against PyTorch
    fp32 on the same model; recommended: within 1 point and 5 % perplexity."""
    out = {}
    for name, row in variants.items():
        model = name.rsplit("-", 1)[-1]  # dense | sparse50 | sparse70
        ref = variants.get(f"torch-fp32-{model}", {}).get("accuracy") or {}
        got = row.get("accuracy") or {}
        if not name.startswith("ov-") or not ref or not got:
            continue
        delta = {t: round(100 * (got[t] - ref[t]), 2) for t in got if t in ref}
        ppl, ref_ppl = (
            row.get("perplexity") or {},
            variants[f"torch-fp32-{model}"].get("perplexity"),
        )
        ratio = {t: round(ppl[t] / ref_ppl[t], 4) for t in ppl if t in (ref_ppl or {})}
        out[name] = {
            "points": delta,
            "perplexity_ratio": ratio,
            # within 1 point, and held-out perplexity within 5 % (accuracy near the floor of an
            # untuned model hides a quantization drop; perplexity does not)
            "recommended": all(d >= -1.0 for d in delta.values())
            and all(r <= 1.05 for r in ratio.values()),
        }
    return out


def _rate(row: dict | None) -> float | None:
    return None if not row or "error" in row else row.get("decode_tokens_per_s")


def summary(sizes: dict) -> dict:
    """Ratios at the largest size run (same runtime and precision for the sparse/dense pair)."""
    size = next((s for s in LARGER_FIRST if s in sizes), None)
    if size is None:
        return {}
    v = sizes[size]["variants"]
    out: dict = {"size": size}
    for pct in (50, 70):
        dense, sparse = _rate(v.get("ov-w8a8-dense")), _rate(v.get(f"ov-w8a8-sparse-sparse{pct}"))
        noprop = _rate(v.get(f"ov-w8a8-sparse-noprop-sparse{pct}"))
        out[f"sparse_over_dense_decode_{pct}"] = (
            round(sparse / dense, 3) if sparse and dense else None
        )
        out[f"property_over_noprop_decode_{pct}"] = (
            round(sparse / noprop, 3) if sparse and noprop else None
        )
        k = (v.get(f"ov-w8a8-sparse-sparse{pct}") or {}).get("kernels", {})
        out[f"sparse_kernel_layers_{pct}"] = k.get("sparse_kernel_layers")
    dense_best = max((_rate(r) or 0) for n, r in v.items() if n.endswith("-dense"))
    sparse_best = max((_rate(r) or 0) for n, r in v.items() if "-sparse" in n)
    out["best_dense_decode"], out["best_sparse_decode"] = dense_best, sparse_best
    out["sparse_best_over_dense_best"] = round(sparse_best / dense_best, 3) if dense_best else None
    out["goals"] = {
        "w8a8_sparse50_over_dense_ge_1.1": (out["sparse_over_dense_decode_50"] or 0) >= 1.1,
        "w8a8_sparse70_over_dense_ge_1.3": (out["sparse_over_dense_decode_70"] or 0) >= 1.3,
        "sparse_best_ge_dense_best": sparse_best >= dense_best > 0,
    }
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", default="smollm2,synthetic-1b", help="smollm2, synthetic-1b, tiny")
    p.add_argument("--sparsities", default="0.5,0.7")
    p.add_argument("--prompt", type=int, default=128, help="prompt tokens")
    p.add_argument("--new", type=int, default=128, help="new tokens per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="inference threads (0: default)")
    p.add_argument("--streams", type=int, default=0, help="OpenVINO NUM_STREAMS (0: default)")
    p.add_argument(
        "--eval-limit",
        type=int,
        default=50,
        help="smollm2: test problems of the default task (and held-out perplexity)",
    )
    p.add_argument("--prune-method", default="wanda")
    p.add_argument("--prune-nsamples", type=int, default=128)
    p.add_argument("--prune-seqlen", type=int, default=512)
    p.add_argument("--work", default="runs/bench_deploy", help="models (reused) and IRs")
    p.add_argument("--reuse", action="store_true", help="reuse IRs already deployed in --work")
    p.add_argument(
        "--w8a8-float",
        default="none",
        help="shears deploy --w8a8-float for the W8A8 variants (default none: every matmul int8, "
        "as in the committed results and the sparse kernel's best case)",
    )
    p.add_argument("--out", default=None, help="JSON file (bench/results/deploy_*.json)")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one variant
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.measure:
        sys.stdout.write(json.dumps(measure(args)) + "\n")
        return
    from shears.deploy.cpu import cpu_info
    from shears.utils import package_versions

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "bench.log"
    settings = {k: v for k, v in vars(args).items() if k != "measure"}
    result: dict = {
        "settings": settings,
        "cpu": cpu_info(),
        "cpu_count": os.cpu_count(),
        "versions": package_versions("shears", "openvino", "nncf", "transformers", "torch"),
        "sizes": {},
    }
    for size in args.sizes.split(","):
        result["sizes"][size] = bench_size(size, args, work, log)
    result["summary"] = summary(result["sizes"])
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
