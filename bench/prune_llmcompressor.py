"""llm-compressor's Wanda on given calibration windows, timed: the reference for bench/precision.py.

Runs in its own environment (llm-compressor pins its own transformers), made by
``make bench-llmc-venv`` (``.venv-llmc``). Reads the model folder and a ``torch.save``d LongTensor
(nsamples, seqlen) of calibration windows, prunes every decoder linear to ``--sparsity`` with
``WandaPruningModifier`` through ``oneshot`` and prints one JSON line: the wall time of ``oneshot``
(loading excluded), the measured sparsity, and the package versions.

    .venv-llmc/bin/python bench/prune_llmcompressor.py --model DIR --windows ids.pt --threads 2
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="HF model folder (safetensors)")
    ap.add_argument("--windows", required=True, help="torch.save'd LongTensor (nsamples, seqlen)")
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    a = ap.parse_args()

    import llmcompressor
    import torch
    import transformers
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import WandaPruningModifier

    if a.threads:
        torch.set_num_threads(a.threads)
    ids = torch.load(a.windows)
    n, seqlen = ids.shape
    ds = Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()}
    )
    model = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    recipe = WandaPruningModifier(
        sparsity=a.sparsity, mask_structure="0:0", targets=["re:.*_proj$"], ignore=["lm_head"]
    )
    t0 = time.perf_counter()
    oneshot(
        model=model,
        dataset=ds,
        recipe=recipe,
        num_calibration_samples=n,
        max_seq_length=seqlen,
        pipeline="sequential",
    )
    seconds = time.perf_counter() - t0
    zeros = total = 0
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.endswith("_proj"):
            zeros += int((mod.weight == 0).sum())
            total += mod.weight.numel()
    print(
        json.dumps(
            {
                "tool": "llm-compressor",
                "seconds": round(seconds, 1),
                "sparsity": round(zeros / max(total, 1), 4),
                "nsamples": n,
                "seqlen": seqlen,
                "threads": torch.get_num_threads(),
                "versions": {
                    "llmcompressor": llmcompressor.__version__,
                    "transformers": transformers.__version__,
                    "torch": torch.__version__,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
