#!/usr/bin/env bash
# Investigation of docs/results.md: does a 4x training budget (160 steps x 8 = 2.5 epochs of the
# 512 training problems, close to the paper's 3 epochs) close the gap between Shears (NLS) and LoRA
# on the sparse model? 40 % Wanda model of the study, math task, seed 0; same settings as the study
# otherwise. Needs `bench/study.py --out runs/study` to have pruned the model first.
set -euo pipefail
STUDY=${STUDY:-runs/study}
OUT=${OUT:-runs/study-budget}
STEPS=${STEPS:-160}
BIN=${BIN:-.venv/bin}
TASK="gym:chain_sum?min_terms=2&max_terms=2&max_digits=2"
COMMON=(--model "$STUDY/prune/s40" --data "$TASK" --train-size 512 --max-steps "$STEPS"
  --batch-size 8 --grad-accum 1 --lr 5e-4 --warmup 0.1 --cutoff-len 128 --seed 0
  --save-steps 40 --resume)
"$BIN/shears" train "${COMMON[@]}" --output-dir "$OUT/nls"
"$BIN/shears" train "${COMMON[@]}" --widths 32 --output-dir "$OUT/lora_sparse"
for run in "nls heuristic" "nls max" "lora_sparse max"; do
  set -- $run
  dir="$OUT/eval/$1_$2"
  [ -f "$dir/eval_results.json" ] || "$BIN/shears" eval --model "$STUDY/prune/s40" \
    --adapter "$OUT/$1" --sub-adapter "$2" --tasks "math:$TASK" --limit 200 \
    --max-new-tokens 16 --batch-size 32 --prompt-style alpaca --output-dir "$dir"
done
# one JSON beside the study's: accuracy, training loss and time of each run
"$BIN/python" - "$OUT" "$STEPS" <<'PY'
import json, sys
from pathlib import Path

out, steps = Path(sys.argv[1]), int(sys.argv[2])
res = {"steps": steps, "batch_size": 8, "sparsity": 0.4, "seed": 0, "runs": {}}
for name in ("nls_heuristic", "nls_max", "lora_sparse_max"):
    ev = json.loads((out / "eval" / name / "eval_results.json").read_text())
    train = json.loads((out / name.rsplit("_", 1)[0] / "train_results.json").read_text())
    res["runs"][name] = {
        "test_accuracy": ev["mean_accuracy"],
        "count": ev["tasks"][next(iter(ev["tasks"]))]["count"],
        "nonzero_parameters": ev["parameters"]["nonzero_parameters"],
        "final_train_loss": train.get("final_loss"),
        "mean_train_loss": train.get("train_loss"),
    }
(out / "study_budget.json").write_text(json.dumps(res, indent=2) + "\n")
print(json.dumps(res, indent=2))
PY
