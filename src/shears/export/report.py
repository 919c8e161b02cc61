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
from typing import TYPE_CHECKING, Any

from shears.adapters.search_space import Config, SearchSpace

if TYPE_CHECKING:
    from shears.export.result import ExportResult, ShownEvaluation, Verification

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


def model_card(result: ExportResult) -> str:
    """README.md for the export folder, from what ``export_results.json`` holds."""
    sections = (
        _front_matter(result),
        _base_section(result),
        _space_section(result),
        _sub_adapter_section(result),
        _nonzero_section(result),
        _evaluation_section(result.evaluation),
        _usage(result),
        _verification_section(result.verification),
    )
    return "\n".join(line for section in sections for line in section)


def _front_matter(r: ExportResult) -> list[str]:
    v = r.versions
    return [
        "---",
        "library_name: peft",
        f"base_model: {r.base_model.path}",
        "tags: [shears, sparse, lora, peft, nls]",
        "---",
        "",
        f"# {r.name}: a Shears sparse model + sub-adapter",
        "",
        f"Exported by shears {v['shears']} (peft {v['peft']}, transformers {v['transformers']}). "
        "Shears (arXiv 2404.10934): a Wanda-sparsified base, an elastic-rank LoRA super-adapter "
        "trained with NLS, and a sub-adapter chosen from it.",
        "",
    ]


def _base_section(r: ExportResult) -> list[str]:
    base, p = r.base_model, r.parameters
    return [
        "## Base model",
        "",
        f"- model: `{base.spec}`"
        + (f" (loaded from `{base.path}`)" if base.path != base.spec else ""),
        f"- sparsity of the linear layers in the decoder blocks: {base.block_linear_sparsity:.2%}",
        f"- sparsity of the adapter's target layers: {base.target_sparsity:.2%}",
        f"- parameters: {p['base_parameters']:,} (non-zero: {p['base_nonzero_parameters']:,}, "
        f"{p['base_sparsity']:.2%} zeros over all parameters)",
        "",
    ]


def _space_section(r: ExportResult) -> list[str]:
    ad, sp = r.adapter, r.search_space
    return [
        "## Super-adapter and search space",
        "",
        f"- super-adapter: `{ad.path}`; r_max {sp.r_max}, alpha {ad.alpha:g} "
        f"(scaling alpha / r_max = {ad.alpha / sp.r_max:g} for every sub-rank), "
        f"dropout {ad.dropout:g}, mask-aware (SparsePEFT): {'yes' if ad.sparse_adapter else 'no'}",
        f"- search space: {sp.groups} groups over {sp.modules} modules; targets "
        f"{', '.join(f'`{t}`' for t in sp.targets)}; widths {sp.widths}",
        f"- grouping per decoder block: {sp.grouping}",
        "",
    ]


def _sub_adapter_section(r: ExportResult) -> list[str]:
    sa, p = r.sub_adapter, r.parameters
    return [
        "## Chosen sub-adapter",
        "",
        f"- source: {_source_text(sa.source, sa.details)}",
        f"- adapter parameters: {p['sub_adapter_parameters']:,} "
        f"(r_max everywhere: {p['lora_r_max_parameters']:,})",
        "- groups per width: " + ", ".join(f"r={w}: {n}" for w, n in sa.width_histogram.items()),
        "",
        sa.rank_table,
        "",
    ]


def _nonzero_section(r: ExportResult) -> list[str]:
    p = r.parameters
    lines = [
        "## Non-zero parameters",
        "",
        "| model | non-zero parameters |",
        "|---|---:|",
        f"| sparse base + this sub-adapter (Shears) | {p['shears_nonzero_parameters']:,} |",
        f"| dense base + LoRA at r_max on the same targets | "
        f"{p['dense_lora_nonzero_parameters']:,} |",
    ]
    if r.merge is not None:
        lines.append(f"| merged model (`merged/`) | {r.merge.model_nonzero_after:,} |")
    return lines + [
        "",
        f"**{p['nonzero_ratio_dense_over_shears']:.2f}x** fewer non-zero parameters than dense "
        "base + LoRA (the paper reports 1.91x at 50 % sparsity on LLaMA-7B).",
        "",
        f"Formula: {p['formula']}.",
        "",
    ]


def _evaluation_section(ev: ShownEvaluation | None) -> list[str]:
    if ev is None:
        return []
    lines = ["## Evaluation", "", f"From `{ev.file}`.", "", "| metric | value |", "|---|---:|"]
    return lines + [f"| {k} | {_fmt(v)} |" for k, v in ev.metrics.items()] + [""]


def _verification_section(ver: Verification | None) -> list[str]:
    if ver is None:
        return []
    return ["## Verification", "", *(f"- {line}" for line in ver.lines), ""]


def _source_text(src: str, d: dict[str, Any]) -> str:
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


def _usage(r: ExportResult) -> list[str]:
    base = r.base_model.path
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
    if r.adapter.sparse_adapter:
        lines += [
            "> **Mask-aware adapter.** It was trained with its delta multiplied by the base "
            "weights' non-zero mask (SparsePEFT). Stock PEFT cannot apply that mask: loaded "
            "unmerged, it adds the *unmasked* delta `B A x` and gives a different model from the "
            "one that was trained and evaluated (measured below). Use the merged model "
            "(`shears export --merge`), which applies the mask and keeps the base's sparsity "
            "exactly.",
            "",
        ]
    if r.merge is not None:
        lines += [
            "The merged model in `merged/` loads with plain transformers:",
            "",
            "```python",
            'model = AutoModelForCausalLM.from_pretrained("<this folder>/merged")',
            "```",
            "",
            r.merge.summary() + ".",
            "",
        ]
    return lines
