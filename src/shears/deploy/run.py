"""``run`` (what ``shears deploy`` runs): check -> load (and merge) -> convert -> quantize ->
write -> verify and profile, into one atomic output folder.

Output folder:
- ``openvino_model.xml`` / ``.bin``: the IR (:mod:`shears.deploy.convert` for its inputs);
- the tokenizer and ``config.json`` of the source model;
- ``lora_uniform/`` (``--merge separate``): the sub-adapter as a uniform-rank stock-PEFT LoRA;
- ``README.md`` (model card), :data:`RESULTS` (``deploy_results.json``), ``deploy_config.json``.

Sparsity stays exact: a mask-aware adapter is merged under the base's mask (exact), any other
adapter stays separate (the base weights are untouched); a plain merge is never done.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shears.artifacts import config_record
from shears.deploy import calibrate
from shears.deploy.config import DeployConfig
from shears.deploy.convert import KVLayout, convert_to_openvino
from shears.deploy.cpu import cpu_info, rate_from_sparsity
from shears.deploy.quantize import adapter_pattern, calibration_items, quantize
from shears.deploy.report import model_card, precision_advice
from shears.deploy.runtime import (
    SPARSE_RATE_KEY,
    OVCausalLM,
    ir_weight_sparsity,
    kernel_report,
    min_pruned_sparsity,
)
from shears.errors import ShearsError
from shears.outputs import atomic_output, check_output
from shears.utils import atomic_write_json, atomic_write_text, package_versions

logger = logging.getLogger(__name__)

RESULTS = "deploy_results.json"
CONFIG = "deploy_config.json"
IR_XML = "openvino_model.xml"
IR_BIN = "openvino_model.bin"
PROBE_TEXT = "Question: A farmer has 12 apples and gives away 5. How many are left?\nAnswer:"


# ---------------------------------------------------------------------------- check


def deploy_inputs(cfg: DeployConfig) -> list[str | None]:
    """What ``shears deploy`` reads: the output folder must not overlap any of it."""
    calibration = (
        cfg.calibration if cfg.calibration not in (calibrate.AUTO, calibrate.TASK) else None
    )
    return [cfg.model, cfg.adapter, cfg.sub_adapter if cfg.adapter else None, calibration]


def _require_openvino() -> None:
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError as exc:
        raise ShearsError(
            f"shears deploy needs OpenVINO and NNCF ({exc.name} is missing): "
            "pip install 'shears-nls[deploy]' (or make install)"
        ) from exc


@dataclass
class DeployPlan:
    """What :func:`check` established before anything is loaded."""

    spec: str  # the model (or base) to load
    merge: str | None  # masked | separate | None (no adapter)
    saved: Any = None  # SuperAdapter configs (no weights) with --adapter
    choice: Any = None  # SubAdapterChoice with --adapter
    cpu: dict[str, Any] | None = None
    calibration: str | None = None  # the resolved W8A8 calibration source (None: no W8A8)


def _adapter_plan(cfg: DeployConfig) -> tuple[str, str, Any, Any]:
    from shears.adapters.io import SuperAdapter, warn_if_other_base
    from shears.adapters.select import resolve_sub_adapter
    from shears.models import validate_model_spec

    saved = SuperAdapter.read(cfg.adapter)
    choice = resolve_sub_adapter(cfg.sub_adapter, saved.space)
    spec = cfg.model or saved.base_spec
    if not spec:
        raise ShearsError(f"adapter {cfg.adapter!r} records no base model: pass --model")
    validate_model_spec(spec)
    warn_if_other_base(cfg.adapter, cfg.model, "deployed")
    mask_aware = bool(saved.config.sparse_adapter)
    merge = cfg.merge if cfg.merge != "auto" else ("masked" if mask_aware else "separate")
    if merge == "masked" and not mask_aware:
        raise ShearsError(
            f"--merge masked: adapter {cfg.adapter!r} was not trained mask-aware, so a merge "
            "either fills the base's zeros (plain) or changes its function (masked); deploy "
            "with --merge separate (exact, the default for it) or train with --sparse-adapter"
        )
    return spec, merge, saved, choice


def check(cfg: DeployConfig) -> DeployPlan:
    """Everything that can be checked before loading; ShearsError on bad input."""
    cpu = cpu_info()
    if cfg.precision == "w8a8-sparse" and not cpu["amx"]:
        msg = (
            f"--precision w8a8-sparse: this CPU ({cpu['model'] or 'unknown'}) has no AMX "
            f"(flags {', '.join(cpu['flags']) or 'unknown'}), which OpenVINO's sparse int8 kernel "
            "needs"
        )
        if cfg.require_amx:
            raise ShearsError(
                msg + "; use --precision int8-weights or w8a8, or --no-require-amx to export "
                "for another machine"
            )
        logger.warning("%s: exporting anyway; the kernel will show as unused here", msg)
    if cfg.adapter:
        spec, merge, saved, choice = _adapter_plan(cfg)
    else:
        from shears.models import validate_model_spec

        spec, merge, saved, choice = str(cfg.model), None, None, None
        validate_model_spec(spec)
        if cfg.merge != "auto":
            raise ShearsError(f"--merge {cfg.merge!r} needs --adapter (the sub-adapter to ship)")
    calibration = None
    if cfg.precision.startswith("w8a8"):
        calibration = calibrate.check(cfg.calibration, cfg.adapter)
        from shears.models import model_skeleton

        skeleton = model_skeleton(spec)  # meta device: the names, before any weight is read
        if skeleton is not None:
            float_modules(skeleton, cfg.w8a8_float)
    _require_openvino()
    check_output(cfg.output_dir, "deploy", overwrite=cfg.overwrite, inputs=deploy_inputs(cfg))
    return DeployPlan(spec, merge, saved, choice, cpu, calibration)


# ---------------------------------------------------------------------------- load


@dataclass
class Loaded:
    model: nn.Module
    tokenizer: Any
    base_sparsity: float  # zeros of the decoder-block linears of the base
    adapter: dict[str, Any] | None  # what happened to the sub-adapter
    layers: dict[str, Any] | None  # elastic layers kept separate


def load(cfg: DeployConfig, plan: DeployPlan) -> Loaded:
    """Load in float32 on the CPU; with an adapter, activate the sub-adapter and merge it masked
    (mask-aware) or keep it separate."""
    from shears.models import find_targets, load_model
    from shears.sparsity import zero_fraction

    model, tok = load_model(plan.spec, dtype="float32", device="cpu")
    sparsity = zero_fraction(m.weight for m in find_targets(model).values()) or 0.0
    if plan.merge is None:
        return Loaded(model, tok, sparsity, None, None)
    from shears.adapters.io import SuperAdapter

    layers = SuperAdapter.load(model, cfg.adapter, dropout=0.0).layers
    model.eval()
    plan.saved.space.apply(layers, plan.choice.config)
    info: dict[str, Any] = {
        "path": str(cfg.adapter),
        "sub_adapter": plan.choice.source,
        "config": plan.choice.config,
        "mask_aware": bool(plan.saved.config.sparse_adapter),
        "merge": plan.merge,
    }
    if plan.merge == "masked":
        from shears.export.merge import merge_adapter

        info["merge_stats"] = merge_adapter(model, keep_sparsity=True).to_dict()
        return Loaded(model, tok, sparsity, info, None)
    return Loaded(model, tok, sparsity, info, layers)


def float_modules(model: nn.Module, spec: str) -> list[str]:
    """The linears ``--w8a8-float`` keeps at float activations: ``auto`` (those of
    :data:`AUTO_FLOAT_MODULES` the model has), ``none``, or comma-separated names, each a part of
    some linear module's name (``down_proj`` of ``model.layers.0.mlp.down_proj``, or of
    ``...down_proj.base_layer`` under an adapter); an unknown name is a ShearsError."""
    from shears.deploy.config import AUTO_FLOAT, AUTO_FLOAT_MODULES
    from shears.models import is_linear

    paths = [n.split(".") for n, m in model.named_modules() if is_linear(m)]
    parts = {p for path in paths for p in path}
    if spec == "none":
        return []
    if spec == AUTO_FLOAT:
        return [n for n in AUTO_FLOAT_MODULES if n in parts]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    linears = {path[-1] if path[-1] != "base_layer" else path[-2] for path in paths}
    for name in names:
        if name not in parts:
            raise ShearsError(
                f"--w8a8-float {name!r} names no linear module of the model; its linear "
                f"modules end with: {', '.join(sorted(linears))}"
            )
    return names


# ---------------------------------------------------------------------------- verify and profile


@torch.no_grad()
def torch_greedy(model: nn.Module, ids: list[int], n: int) -> tuple[list[int], np.ndarray]:
    """Greedy tokens of the PyTorch model (full recompute each step) and its logits after the
    prompt (vocab,)."""
    seq = torch.tensor([ids])
    out, first = [], None
    for _ in range(n):
        logits = model(input_ids=seq).logits[0, -1]
        first = logits.numpy().copy() if first is None else first
        tok = int(logits.argmax())
        out.append(tok)
        seq = torch.cat([seq, torch.tensor([[tok]])], dim=1)
    return out, first


def compare(ref: tuple[list[int], np.ndarray], got_tokens: list[int], got_logits: np.ndarray):
    """Greedy-token agreement and the prompt logits' difference, relative to their spread."""
    tokens, logits = ref
    n = min(len(tokens), len(got_tokens))
    same = next((i for i in range(n) if tokens[i] != got_tokens[i]), n)
    diff = float(np.abs(logits - got_logits).max())
    return {
        "tokens": n,
        "greedy_tokens_match": same == n,
        "first_mismatch": None if same == n else same,
        "max_abs_logit_diff": diff,
        "logit_std": float(logits.std()),
        "rel_logit_diff": diff / max(float(logits.std()), 1e-12),
        "torch_tokens": tokens,
        "openvino_tokens": got_tokens[:n],
    }


def runtime_properties(cfg: DeployConfig, rate: float | None) -> dict[str, Any]:
    """Compile properties a loader must use (recorded in ``deploy_results.json``)."""
    props: dict[str, Any] = {}
    if cfg.inference_precision != "auto":
        props["INFERENCE_PRECISION_HINT"] = cfg.inference_precision
    if rate is not None:
        props[SPARSE_RATE_KEY] = rate
    return props


def profile(xml: Path, props: dict[str, Any], prompt: list[int]) -> dict[str, Any]:
    """Which matmuls ran which kernel on a decode step (profiling counters of the runtime)."""
    rt = OVCausalLM(xml, props, perf_count=True)
    rt.generate(prompt, 2)  # prefill, then one decode step: the counters of that step
    return kernel_report(rt.profiling_rows())


# ---------------------------------------------------------------------------- run


def _write_ir(tmp: Path, loaded: Loaded, ov_model: Any, base_spec: str) -> dict[str, Any]:
    import openvino as ov

    ov.save_model(ov_model, str(tmp / IR_XML), compress_to_fp16=False)
    loaded.tokenizer.save_pretrained(str(tmp))
    loaded.model.config.save_pretrained(str(tmp))
    out: dict[str, Any] = {}
    if loaded.layers is not None:
        from shears.deploy.adapter import UNIFORM_DIR, write_uniform_lora

        out = write_uniform_lora(loaded.layers, tmp / UNIFORM_DIR, base_spec)
    return out


def run(cfg: DeployConfig) -> dict[str, Any]:
    """Deploy; return what ``deploy_results.json`` holds. Nothing is written unless every check
    passes."""
    t0 = time.perf_counter()
    plan = check(cfg)
    logger.info("deploying %s (%s, merge %s) to OpenVINO", plan.spec, cfg.precision, plan.merge)
    loaded = load(cfg, plan)
    if cfg.precision == "w8a8-sparse" and cfg.sparse_rate is None and loaded.base_sparsity < 0.05:
        raise ShearsError(
            f"--precision w8a8-sparse: {plan.spec!r} has {loaded.base_sparsity:.1%} zeros in its "
            "decoder linears, no pruned matmul layers for the sparse kernel; prune it first "
            "(shears prune) or use --precision int8-weights or w8a8"
        )
    floats = float_modules(loaded.model, cfg.w8a8_float) if cfg.precision.startswith("w8a8") else []
    prompt = loaded.tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    ref = torch_greedy(loaded.model, prompt, cfg.verify_tokens) if cfg.verify else None

    ov_model = convert_to_openvino(loaded.model)
    items = None
    if cfg.precision.startswith("w8a8"):
        windows = calibrate.windows(
            plan.calibration,
            cfg.adapter,
            loaded.tokenizer,
            cfg.nsamples,
            cfg.seqlen,
            cfg.seed,
            cfg.text_field,
            cfg.data_split,
        )
        items = calibration_items(windows, KVLayout.of(loaded.model.config))
    modules = list(loaded.layers) if loaded.layers else None
    if floats:
        logger.info("W8A8: %s keep float activations (int8 weights)", ", ".join(floats))
    advice = precision_advice(cfg.precision, floats)
    for note in advice:
        logger.warning("%s", note)
    ov_model = quantize(ov_model, cfg.precision, items, cfg.smooth_quant_alpha, modules, floats)
    sparsity = ir_weight_sparsity(ov_model, exclude=adapter_pattern(modules))
    rate = None
    if cfg.precision == "w8a8-sparse":
        rate = cfg.sparse_rate or rate_from_sparsity(min_pruned_sparsity(sparsity))
    props = runtime_properties(cfg, rate)
    out = Path(cfg.output_dir)
    with atomic_output(out, "deploy", overwrite=cfg.overwrite, inputs=deploy_inputs(cfg)) as tmp:
        uniform = _write_ir(tmp, loaded, ov_model, plan.spec)
        verification = None
        if ref is not None:
            rt = OVCausalLM(tmp / IR_XML, props)
            gen = rt.generate(prompt, cfg.verify_tokens)
            verification = compare(ref, gen.tokens, gen.first_logits)
            (logger.info if verification["greedy_tokens_match"] else logger.warning)(
                "verification: greedy tokens %s PyTorch's (%d tokens), max logit diff %.3g "
                "(%.2g of the logits' std)",
                "match" if verification["greedy_tokens_match"] else "differ from",
                verification["tokens"],
                verification["max_abs_logit_diff"],
                verification["rel_logit_diff"],
            )
        kernels = profile(tmp / IR_XML, props, prompt)
        result = {
            "name": out.name,
            "output_dir": str(out),
            "precision": cfg.precision,
            "runtime_properties": props,
            "model": plan.spec,
            "adapter": loaded.adapter,
            "uniform_lora": uniform or None,
            "base_linear_sparsity": loaded.base_sparsity,
            "ir_sparsity": {k: v for k, v in sparsity.items() if k not in ("layers", "excluded")},
            "adapter_matmuls": sparsity["excluded"],
            "ir_sparsity_per_layer": {
                k: v["zeros"] / max(int(np.prod(v["shape"])), 1)
                for k, v in sparsity["layers"].items()
            },
            "sparse_rate": rate,
            "calibration": plan.calibration,
            "w8a8_float": floats,
            "advice": advice,
            "sparse_kernel": kernels,
            "cpu": plan.cpu,
            "bytes": {
                "ir_bin": (tmp / IR_BIN).stat().st_size,
                "ir_xml": (tmp / IR_XML).stat().st_size,
            },
            "verification": verification,
            "versions": package_versions("shears", "openvino", "nncf", "transformers", "torch"),
            "time_s": round(time.perf_counter() - t0, 2),
        }
        atomic_write_text(tmp / "README.md", model_card(result))
        atomic_write_json(tmp / CONFIG, config_record(cfg))
        atomic_write_json(tmp / RESULTS, result)
    logger.info(
        "wrote %s in %.1f s: %s, %.1f MB, IR matmul sparsity %.1f %%, sparse kernel on %d of %d "
        "matmuls",
        out,
        result["time_s"],
        cfg.precision,
        result["bytes"]["ir_bin"] / 1e6,
        100 * sparsity["sparsity"],
        kernels["sparse_kernel_layers"],
        kernels["matmul_layers"],
    )
    return result
