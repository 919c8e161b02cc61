#!/usr/bin/env bash
# The paper-scale pieces at reduced size on one GPU (issue 14): prune a random LLaMA at 7B widths,
# NLS steps in bf16, one search turn, stock-PEFT export; prints one JSON line (bench/gpu_check.py).
# Needs no network. Python: $PYTHON, else the project's .venv when its torch sees CUDA, else
# python3 (it needs torch, transformers>=5, peft, accelerate, safetensors, tokenizers, pyyaml,
# tqdm, psutil; on a machine without them, carry wheels).
#   bash bench/gpu_check.sh            # < 8 minutes on one GPU
#   bash bench/gpu_check.sh --smoke    # tiny widths: checks the script anywhere in seconds
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x .venv/bin/python ]] && .venv/bin/python -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    py=.venv/bin/python
  elif [[ -x .venv/bin/python && " $* " == *" --smoke "* ]]; then
    py=.venv/bin/python
  else
    py=python3
  fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec "$py" bench/gpu_check.py "$@"
