"""The model card (README.md) of a deployed model, from its ``deploy_results.json`` dict."""

from __future__ import annotations

from typing import Any


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def model_card(r: dict[str, Any]) -> str:
    """Markdown: what was deployed, how sparsity was kept, what the runtime did."""
    k, v, a = r["sparse_kernel"], r.get("verification"), r.get("adapter")
    lines = [
        f"# {r['name']}: OpenVINO IR ({r['precision']})",
        "",
        f"Deployed by `shears deploy` from `{r['model']}`.",
        "",
        "| | |",
        "|---|---|",
        f"| precision | {r['precision']} |",
        f"| runtime properties | `{r['runtime_properties'] or {}}` |",
        f"| base decoder-linear sparsity | {_pct(r['base_linear_sparsity'])} |",
        f"| IR matmul-weight sparsity | {_pct(r['ir_sparsity']['sparsity'])} "
        f"({r['ir_sparsity']['matmuls']} matmuls) |",
        f"| IR size | {r['bytes']['ir_bin'] / 1e6:.1f} MB |",
        f"| sparse kernel (runtime counters) | {k['sparse_kernel_layers']} of "
        f"{k['matmul_layers']} matmuls; exec types {k['exec_types']} |",
        f"| CPU | {r['cpu']['model']} (AMX: {r['cpu']['amx']}) |",
    ]
    if r.get("calibration"):
        lines.append(f"| W8A8 calibration text | {r['calibration']} |")
        floats = ", ".join(r.get("w8a8_float") or []) or "none"
        lines.append(f"| W8A8 float-activation linears | {floats} |")
    if a:
        how = (
            "merged under the base's non-zero mask (mask-aware adapter: exact)"
            if a["merge"] == "masked"
            else "kept separate as low-rank matmuls beside the sparse base (exact); also in "
            "`lora_uniform/` as a uniform-rank stock-PEFT LoRA"
        )
        lines += ["", f"Sub-adapter ({a['sub_adapter']}) of `{a['path']}`: {how}."]
    if v:
        lines += [
            "",
            f"Verification on a probe prompt: greedy tokens "
            f"{'match' if v['greedy_tokens_match'] else 'differ from'} PyTorch over "
            f"{v['tokens']} tokens; max logit difference {v['max_abs_logit_diff']:.3g} "
            f"({v['rel_logit_diff']:.2g} of the logits' standard deviation).",
        ]
    lines += [
        "",
        "Load: `model, tokenizer = shears.deploy.model.load_deployed(folder)` (greedy "
        "`generate` and whole-sequence logits with the recorded runtime properties), or "
        "`shears.deploy.runtime.OVCausalLM(folder / 'openvino_model.xml', "
        "results['runtime_properties'])`; the IR's inputs and outputs are described in "
        "`shears.deploy.convert`.",
        "",
    ]
    return "\n".join(lines)
