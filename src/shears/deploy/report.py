"""The model card (README.md) of a deployed model, from its ``deploy_results.json`` dict."""

from __future__ import annotations

from typing import Any


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def precision_advice(precision: str, floats: list[str]) -> list[str]:
    """Warnings about the chosen precision, from what was measured (README "Deploy")."""
    if not precision.startswith("w8a8"):
        return []
    if not floats:
        return [
            "not recommended: W8A8 with every matmul int8 lost most of a tuned model's accuracy "
            "where measured (SmolLM2 demo model, 46.5 -> 6.5 %); measure this one with `shears "
            "eval --model <this folder>`, or keep the outlier linears at float activations "
            "(--w8a8-float auto keeps down_proj)"
        ]
    if precision == "w8a8-sparse":
        return [
            f"the linears at float activations ({', '.join(floats)}) do not run the sparse int8 "
            "kernel (it needs int8 activations); --w8a8-float none gives it every matmul, at "
            "the accuracy an all-int8 W8A8 may lose"
        ]
    return []


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
    for note in r.get("advice") or []:
        lines += ["", f"**Note:** {note}."]
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
