"""Parameter accounting (the paper's "1.91x fewer non-zero parameters") and the model card.

The paper counts non-zero parameters over *all* parameters (embeddings and head included, tied
weights once), adapters included:

    shears  = NZ(sparse base) + sum_i r_i * (in_i + out_i)        (the chosen sub-adapter)
    dense   = P(base)         + sum_i r_max * (in_i + out_i)      (dense base + LoRA at r_max,
                                                                    same target modules)
    ratio   = dense / shears

``P(base)`` is the base's parameter count: a dense base has every parameter non-zero.
"""

from __future__ import annotations

import re
from typing import Any

from shears.adapters.search_space import Config, SearchSpace

FORMULA = (
    "ratio = (P_base + sum_i r_max * (in_i + out_i)) / (NZ_base + sum_i r_i * (in_i + out_i)), "
    "over all parameters (embeddings and head included, tied weights once); P_base: parameters of "
    "the base (all non-zero when dense), NZ_base: non-zero parameters of the sparse base, i: the "
    "adapter's target modules, r_i: the chosen rank, r_max: the super-adapter's rank"
)


def parameter_summary(
    base_parameters: int, base_nonzero: int, space: SearchSpace, config: Config
) -> dict[str, Any]:
    """Non-zero parameters of sparse base + sub-adapter vs dense base + LoRA at r_max."""
    adapter = space.adapter_parameters(config)
    lora_rmax = space.adapter_parameters(space.maximal())
    shears = base_nonzero + adapter
    dense = base_parameters + lora_rmax
    return {
        "base_parameters": base_parameters,
        "base_nonzero_parameters": base_nonzero,
        "base_sparsity": 1 - base_nonzero / max(base_parameters, 1),
        "sub_adapter_parameters": adapter,
        "lora_r_max_parameters": lora_rmax,
        "shears_nonzero_parameters": shears,
        "dense_lora_nonzero_parameters": dense,
        "nonzero_ratio_dense_over_shears": dense / max(shears, 1),
        "formula": FORMULA,
    }


# ---------------------------------------------------------------------------- rank table


def _split_group(name: str) -> tuple[int, str] | None:
    m = re.fullmatch(r"(\d+)\.(.+)", name)
    return (int(m.group(1)), m.group(2)) if m else None


def rank_table(space: SearchSpace, config: Config) -> str:
    """Markdown table of the chosen ranks: one row per decoder layer, one column per group label
    (``0.q_proj+k_proj+v_proj`` -> layer 0, column ``q_proj+k_proj+v_proj``); a plain
    group/rank list when group names do not follow that form."""
    parsed = {g.name: _split_group(g.name) for g in space.groups}
    if all(parsed.values()):
        labels = list(dict.fromkeys(p[1] for p in parsed.values()))  # type: ignore[index]
        rows: dict[int, dict[str, int]] = {}
        for name, (layer, label) in parsed.items():  # type: ignore[misc]
            rows.setdefault(layer, {})[label] = config[name]
        lines = [
            "| layer | " + " | ".join(f"`{lab}`" for lab in labels) + " |",
            "|---:|" + "---:|" * len(labels),
        ]
        for layer in sorted(rows):
            cells = [str(rows[layer].get(lab, "-")) for lab in labels]
            lines.append(f"| {layer} | " + " | ".join(cells) + " |")
        return "\n".join(lines)
    lines = ["| group | rank |", "|---|---:|"]
    lines += [f"| `{g.name}` | {config[g.name]} |" for g in space.groups]
    return "\n".join(lines)


def width_histogram(space: SearchSpace, config: Config) -> dict[int, int]:
    """How many groups take each width (high to low)."""
    widths = sorted({w for g in space.groups for w in g.widths}, reverse=True)
    return {w: sum(1 for g in space.groups if config[g.name] == w) for w in widths}


# ---------------------------------------------------------------------------- evaluation


def flatten_scalars(data: Any, prefix: str = "", depth: int = 3) -> dict[str, Any]:
    """Nested dict -> ``{"a.b": scalar}`` (lists and deeper levels skipped)."""
    out: dict[str, Any] = {}
    if not isinstance(data, dict) or depth < 0:
        return out
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, (bool, int, float, str)):
            out[key] = v
        elif isinstance(v, dict):
            out.update(flatten_scalars(v, key + ".", depth - 1))
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


# ---------------------------------------------------------------------------- card


def model_card(info: dict[str, Any]) -> str:
    """README.md for the export folder, from the ``export_results.json`` dict ``info``."""
    p = info["parameters"]
    sa = info["sub_adapter"]
    sp = info["search_space"]
    ad = info["adapter"]
    base = info["base_model"]
    mask_aware = ad["sparse_adapter"]
    lines = [
        "---",
        "library_name: peft",
        f"base_model: {base['path']}",
        "tags: [shears, sparse, lora, peft, nls]",
        "---",
        "",
        f"# {info['name']}: a Shears sparse model + sub-adapter",
        "",
        f"Exported by shears {info['versions']['shears']} (peft {info['versions']['peft']}, "
        f"transformers {info['versions']['transformers']}). Shears (arXiv 2404.10934): a "
        "Wanda-sparsified base, an elastic-rank LoRA super-adapter trained with NLS, and a "
        "sub-adapter chosen from it.",
        "",
        "## Base model",
        "",
        f"- model: `{base['spec']}`"
        + (f" (loaded from `{base['path']}`)" if base["path"] != base["spec"] else ""),
        f"- sparsity of the linear layers in the decoder blocks: {base['block_linear_sparsity']:.2%}",
        f"- sparsity of the adapter's target layers: {base['target_sparsity']:.2%}",
        f"- parameters: {p['base_parameters']:,} (non-zero: {p['base_nonzero_parameters']:,}, "
        f"{p['base_sparsity']:.2%} zeros over all parameters)",
        "",
        "## Super-adapter and search space",
        "",
        f"- super-adapter: `{ad['path']}`; r_max {sp['r_max']}, alpha {ad['alpha']:g} "
        f"(scaling alpha / r_max = {ad['alpha'] / sp['r_max']:g} for every sub-rank), "
        f"dropout {ad['dropout']:g}, mask-aware (SparsePEFT): {'yes' if mask_aware else 'no'}",
        f"- search space: {sp['groups']} groups over {sp['modules']} modules; targets "
        f"{', '.join(f'`{t}`' for t in sp['targets'])}; widths {sp['widths']}",
        f"- grouping per decoder block: {sp['grouping']}",
        "",
        "## Chosen sub-adapter",
        "",
        f"- source: {_source_text(sa)}",
        f"- adapter parameters: {p['sub_adapter_parameters']:,} "
        f"(r_max everywhere: {p['lora_r_max_parameters']:,})",
        "- groups per width: " + ", ".join(f"r={w}: {n}" for w, n in sa["width_histogram"].items()),
        "",
        sa["rank_table"],
        "",
        "## Non-zero parameters",
        "",
        "| model | non-zero parameters |",
        "|---|---:|",
        f"| sparse base + this sub-adapter (Shears) | {p['shears_nonzero_parameters']:,} |",
        f"| dense base + LoRA at r_max on the same targets | "
        f"{p['dense_lora_nonzero_parameters']:,} |",
    ]
    merged = info.get("merge")
    if merged:
        lines.append(f"| merged model (`merged/`) | {merged['model_nonzero_after']:,} |")
    lines += [
        "",
        f"**{p['nonzero_ratio_dense_over_shears']:.2f}x** fewer non-zero parameters than dense "
        "base + LoRA (the paper reports 1.91x at 50 % sparsity on LLaMA-7B).",
        "",
        f"Formula: {p['formula']}.",
        "",
    ]
    ev = info.get("evaluation")
    if ev:
        lines += [
            "## Evaluation",
            "",
            f"From `{ev['file']}`.",
            "",
            "| metric | value |",
            "|---|---:|",
        ]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in ev["metrics"].items()]
        lines.append("")
    lines += _usage(info, mask_aware, merged)
    ver = info.get("verification") or {}
    if ver:
        lines += ["## Verification", ""]
        lines += [f"- {line}" for line in ver.get("lines", [])]
        lines.append("")
    return "\n".join(lines)


def _source_text(sa: dict[str, Any]) -> str:
    src = sa["source"]
    d = sa.get("details", {})
    if src == "search":
        extra = ", ".join(f"{k} {_fmt(v)}" for k, v in d.items() if k != "file")
        return f"search result `{d.get('file')}`" + (f" ({extra})" if extra else "")
    if src == "heuristic":
        return "heuristic (the middle width of every group; no evaluation)"
    if src in ("max", "min"):
        return f"{src} (every group at its {'largest' if src == 'max' else 'smallest'} width)"
    if src == "file":
        return f"widths file `{d.get('file')}`"
    return src


def _usage(info: dict[str, Any], mask_aware: bool, merged: dict | None) -> list[str]:
    base = info["base_model"]["path"]
    lines = [
        "## How to use",
        "",
        "With stock PEFT (no Shears needed): this folder is a plain LoRA adapter whose "
        "`rank_pattern` / `alpha_pattern` encode the chosen ranks.",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        "",
        f'base = AutoModelForCausalLM.from_pretrained("{base}")',
        'model = PeftModel.from_pretrained(base, "<this folder>")',
        "```",
        "",
    ]
    if mask_aware:
        lines += [
            "> **Mask-aware adapter.** It was trained with its delta multiplied by the base "
            "weights' non-zero mask (SparsePEFT). Stock PEFT cannot apply that mask: loaded "
            "unmerged, it adds the *unmasked* delta `B A x` and gives a different model from the "
            "one that was trained and evaluated (measured below). Use the merged model "
            "(`shears export --merge`), which applies the mask and keeps the base's sparsity "
            "exactly.",
            "",
        ]
    if merged:
        lines += [
            "The merged model in `merged/` loads with plain transformers:",
            "",
            "```python",
            'model = AutoModelForCausalLM.from_pretrained("<this folder>/merged")',
            "```",
            "",
            merged["summary"] + ".",
            "",
        ]
    return lines
