"""Training-step time of NLS (elastic LoRA, a random sub-adapter per step) against PEFT LoRA.

On SmolLM2-135M (``load_model("smollm2-135m")``), one fixed batch, the paper's targets
(q, k, v, up, down) and space ([32, 24, 16], alpha 64, dropout 0.1). A step is zero_grad +
forward + backward + AdamW step. Modes run round-robin (one step each per round) so that load
from other processes hits them alike; the median over rounds is reported, as JSON on stdout:

    nls_random  a new sampled sub-adapter every step (what NLS training does)
    nls_max     elastic layers fixed at r_max;  peft_max  PEFT LoRA r = r_max
    nls_min     elastic layers fixed at the smallest width;  peft_min  PEFT LoRA r = min width
    nls_distill  nls_random + distillation from the frozen dense model (logit KD, w 0.5, T 2),
                 both output heads applied at the CE tokens only (``Distiller.student_loss``)
    nls_distill_hidden  the same + the normalised hidden-state loss (--distill-hidden 1)
    nls_distill_teacher  the student's full logits (its model's own loss), the teacher gathered
    nls_distill_full  the full-logit path of both (``Distiller(gather=False)``, the old one)

``--answer-frac f`` puts the loss on the last ``f`` of each row only (labels -100 before it, like
answer-only training); ``--modes`` runs a subset. Run:
``python bench/train_step.py --batch 2 --seq 128 --rounds 5``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time

import torch


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5, help="measured steps per mode")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured steps per mode first")
    p.add_argument("--widths", default="32,24,16")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--out", default="", help="also write the JSON here")
    p.add_argument(
        "--answer-frac", type=float, default=1.0,
        help="fraction of each row (its end) that carries the loss; 1 = every token",
    )  # fmt: skip
    p.add_argument("--modes", default="", help="comma-separated modes to run (default: all)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    from peft import LoraConfig, get_peft_model

    from shears.adapters import ElasticLoraConfig, SpaceConfig, SuperAdapter
    from shears.models import load_model
    from shears.train.teacher import Distiller, freeze

    widths = [int(w) for w in a.widths.split(",")]
    model, _ = load_model(a.model, dtype=a.dtype, device=a.device)
    dev = next(model.parameters()).device
    peft_base = copy.deepcopy(model)
    teacher = freeze(copy.deepcopy(model))

    # -- NLS: elastic layers on the paper's space
    cfg = ElasticLoraConfig(alpha=64.0, dropout=0.1)
    nls = SuperAdapter.create(model, cfg, SpaceConfig(widths=widths))
    layers, space = nls.layers, nls.space
    model.train()

    # -- PEFT: two adapters (r_max and min width) on a copy, same targets
    def lora(r: int) -> LoraConfig:
        return LoraConfig(
            r=r, lora_alpha=cfg.alpha * r / space.r_max, lora_dropout=cfg.dropout,
            target_modules=space.modules, task_type="CAUSAL_LM",
        )  # fmt: skip

    peft_model = get_peft_model(peft_base, lora(widths[0]), adapter_name="max")
    peft_model.add_adapter("min", lora(widths[-1]))
    peft_model.train()

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (a.batch, a.seq), generator=gen).to(dev)
    labels = ids.clone()
    labels[:, : a.seq - max(1, round(a.seq * a.answer_frac))] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    nls_params = [p for p in model.parameters() if p.requires_grad]
    opt_nls = torch.optim.AdamW(nls_params, lr=1e-4)

    def peft_opt(name: str):
        peft_model.set_adapter(name)
        return torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)

    opt_peft = {"max": peft_opt("max"), "min": peft_opt("min")}
    step_counter = {"n": 0}

    def nls_step(config_fn):
        def run():
            space.apply(layers, config_fn())
            opt_nls.zero_grad(set_to_none=True)
            model(**batch).loss.backward()
            opt_nls.step()

        return run

    def peft_step(name: str):
        def run():
            peft_model.set_adapter(name)
            opt_peft[name].zero_grad(set_to_none=True)
            peft_model(**batch).loss.backward()
            opt_peft[name].step()

        return run

    def distill_step(d: Distiller, student_gather: bool = True):
        def run():
            space.apply(layers, sampled())
            opt_nls.zero_grad(set_to_none=True)
            step = d.student_loss(model, batch) if student_gather else None
            if step is None:
                out = model(**batch, output_hidden_states=d.hidden > 0)
                ce = out.loss
            else:
                ce, out = step
            terms = d.terms(out, d.teacher_outputs(batch), batch["labels"])
            d.combine(ce, terms).backward()
            opt_nls.step()

        return run

    def sampled():
        step_counter["n"] += 1
        return space.sample(0, step_counter["n"])

    modes = {
        "nls_random": nls_step(sampled),
        "nls_max": nls_step(space.maximal),
        "nls_min": nls_step(space.minimal),
        "peft_max": peft_step("max"),
        "peft_min": peft_step("min"),
        "nls_distill": distill_step(Distiller(teacher, 0.5, 2.0, 0.0)),
        "nls_distill_hidden": distill_step(Distiller(teacher, 0.5, 2.0, 1.0)),
        "nls_distill_teacher": distill_step(Distiller(teacher, 0.5, 2.0, 0.0), False),
        "nls_distill_full": distill_step(Distiller(teacher, 0.5, 2.0, 0.0, gather=False)),
    }
    if a.modes:
        wanted = a.modes.split(",")
        unknown = sorted(set(wanted) - set(modes))
        if unknown:
            p.error(f"unknown modes {unknown}; known: {sorted(modes)}")
        modes = {m: fn for m, fn in modes.items() if m in wanted}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {m: [] for m in modes}
    for i in range(a.warmup + a.rounds):
        for name, fn in modes.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            if i >= a.warmup:
                times[name].append(time.perf_counter() - t0)
    med = {m: statistics.median(t) for m, t in times.items()}
    result = {
        "model": a.model,
        "device": str(dev),
        "dtype": a.dtype,
        "torch_threads": torch.get_num_threads(),
        "batch": a.batch,
        "seq": a.seq,
        "rounds": a.rounds,
        "warmup": a.warmup,
        "widths": widths,
        "adapter_modules": len(space.modules),
        "answer_frac": a.answer_frac,
        "label_tokens": int((labels[:, 1:] != -100).sum()),
        "median_step_s": {m: round(v, 4) for m, v in med.items()},
        "all_step_s": {m: [round(v, 4) for v in t] for m, t in times.items()},
        "ratios": {
            f"{x} / {y}": round(med[x] / med[y], 3)
            for x, y in (
                ("nls_random", "peft_max"),
                ("nls_max", "peft_max"),
                ("nls_min", "peft_min"),
                ("nls_random", "peft_min"),
                ("nls_distill", "nls_random"),
                ("nls_distill_hidden", "nls_random"),
                ("nls_distill_teacher", "nls_random"),
                ("nls_distill_full", "nls_random"),
            )
            if x in med and y in med
        },
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
