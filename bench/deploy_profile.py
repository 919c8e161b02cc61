"""What bounds batch-1 decoding of a ``shears deploy`` IR on this CPU, and do threads or streams
change it (issue 16).

For IRs that ``bench/deploy.py`` deployed (``--work``, reused, nothing is exported here), each in
its own process and at each ``--threads`` x ``--streams`` setting: decode tokens/s (median over
``--rounds``), and from OpenVINO's profiling counters of one decode step (context ``--prompt``) the
time per node type (matmuls, attention, quantize, ...) and which matmul kernels ran. Beside them a
memory-read probe (a float32 tensor of ``--probe-gib`` summed by torch at each thread count) gives
the bandwidth this machine reaches. Derived per row: the weight bytes each decode step must read
(``openvino_model.bin``) over the step time, as GB/s and as a fraction of the probe's at the same
thread count. A fraction near 1 means decoding is bound by memory traffic (what a sparse kernel
that reads fewer bytes would save); well below 1, by compute.

    .venv/bin/python bench/deploy_profile.py --work runs/bench_deploy/synthetic-1b \\
        --out bench/results/deploy_profile_synthetic1b.json

Prints the JSON (and writes ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

DEFAULT_VARIANTS = "ov-int8-weights-dense,ov-w8a8-dense,ov-w8a8-sparse-sparse50"


def bandwidth_probe(gib: float, threads: int, rounds: int = 3) -> float:
    """Best read bandwidth (GB/s) of summing a float32 tensor of ``gib`` GiB on ``threads``."""
    import torch

    torch.set_num_threads(threads)
    x = torch.ones(int(gib * 2**30) // 4, dtype=torch.float32)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t0)
    return round(x.numel() * 4 / best / 1e9, 2)


def breakdown(rows: list[dict]) -> dict[str, float]:
    """Time (us) per node type of one profiled inference, largest first."""
    per: dict[str, float] = defaultdict(float)
    for r in rows:
        per[r["type"]] += r["time_us"]
    return {k: round(v, 1) for k, v in sorted(per.items(), key=lambda kv: -kv[1])}


def derive(row: dict, weight_bytes: int, probe_gbps: float | None) -> dict:
    """Step time, the weight bytes read per second, and that over the probed bandwidth."""
    rate = row["decode_tokens_per_s"]
    gbps = weight_bytes * rate / 1e9
    out = {"step_ms": round(1000 / rate, 2), "weight_read_gbps": round(gbps, 2)}
    if probe_gbps:
        out["fraction_of_probe"] = round(gbps / probe_gbps, 3)
    return out


def measure(path: Path, threads: int, streams: int, prompt: int, new: int, rounds: int) -> dict:
    """One IR at one setting, in this process."""
    from shears.deploy.runtime import OVCausalLM, kernel_report

    results = json.loads((path / "deploy_results.json").read_text())
    props = dict(results["runtime_properties"])
    if threads:
        props["INFERENCE_NUM_THREADS"] = threads
    if streams:
        props["NUM_STREAMS"] = streams
    ids = [(7 * i + 3) % 1000 + 10 for i in range(prompt)]  # any fixed tokens: speed only
    model = OVCausalLM(path / "openvino_model.xml", props)
    model.generate(ids, new)  # warm-up
    rates = [model.generate(ids, new).decode_tokens_per_s for _ in range(rounds)]
    del model
    prof = OVCausalLM(path / "openvino_model.xml", props, perf_count=True)
    prof.generate(ids, 8)  # warm-up: the first steps of a fresh compile run cold
    gen = prof.generate(ids, 8)  # the counters of the last inference: one warm decode step
    rows = prof.profiling_rows()
    rep = kernel_report(rows)
    return {
        "decode_tokens_per_s": round(statistics.median(rates), 3),
        "decode_rounds": [round(r, 3) for r in rates],
        "profiled_step_us": round(sum(r["time_us"] for r in rows), 1),
        "profiled_step_wall_us": round(gen.decode_s[-1] * 1e6, 1),
        "time_us_by_type": breakdown(rows),
        "matmul_kernels": rep["exec_types"],
        "sparse_kernel_layers": rep["sparse_kernel_layers"],
    }


def run_one(args, path: Path, threads: int, streams: int) -> dict:
    """``measure`` in a child process (its own threads and caches)."""
    cmd = [sys.executable, __file__, "--measure", str(path), "--threads", str(threads)]
    cmd += ["--streams", str(streams), "--prompt", str(args.prompt), "--new", str(args.new)]
    cmd += ["--rounds", str(args.rounds)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--work", help="a size folder of bench/deploy.py's --work (required)")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help="IR folders in --work")
    p.add_argument("--threads", default="1,2", help="INFERENCE_NUM_THREADS values (0: default)")
    p.add_argument("--streams", default="1,2", help="NUM_STREAMS values (0: default)")
    p.add_argument("--prompt", type=int, default=128, help="prompt tokens (the decode context)")
    p.add_argument("--new", type=int, default=64, help="new tokens per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--probe-gib", type=float, default=2.0, help="size of the bandwidth probe")
    p.add_argument("--out", default=None, help="JSON file")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one IR
    a = p.parse_args(argv)
    if a.measure:
        row = measure(Path(a.measure), int(a.threads), int(a.streams), a.prompt, a.new, a.rounds)
        sys.stdout.write(json.dumps(row) + "\n")
        return
    if not a.work:
        p.error("the following arguments are required: --work")
    work = Path(a.work)
    names = a.variants.split(",")
    missing = [n for n in names if not (work / n / "deploy_results.json").is_file()]
    if missing:
        sys.exit(f"error: no deployed IR in {work} for --variants {','.join(missing)}")
    threads = [int(t) for t in a.threads.split(",")]
    streams = [int(s) for s in a.streams.split(",")]
    probe = {t: bandwidth_probe(a.probe_gib, t or os.cpu_count() or 1) for t in threads}
    from shears.deploy.cpu import cpu_info
    from shears.utils import package_versions

    result: dict = {
        "settings": {k: v for k, v in vars(a).items() if k != "measure"},
        "cpu": cpu_info(),
        "cpu_count": os.cpu_count(),
        "versions": package_versions("shears", "openvino", "torch"),
        "read_bandwidth_gbps": {str(t): g for t, g in probe.items()},
        "variants": {},
    }
    for name in names:
        size = (work / name / "openvino_model.bin").stat().st_size
        rows = {}
        for t in threads:
            for s in streams:
                row = run_one(a, work / name, t, s)
                if "error" not in row:
                    row.update(derive(row, size, probe[t]))
                rows[f"threads{t}_streams{s}"] = row
                print(f"{name} threads {t} streams {s}: {json.dumps(row)}", file=sys.stderr)
        result["variants"][name] = {"weight_bytes": size, "settings": rows}
    text = json.dumps(result, indent=2)
    if a.out:
        Path(a.out).write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
