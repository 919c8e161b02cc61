"""Configuration of ``shears export``."""

from __future__ import annotations

from dataclasses import dataclass

from shears.config import field
from shears.errors import ShearsError
from shears.stage import OverwriteConfig


@dataclass
class ExportConfig(OverwriteConfig):
    """Export a sub-adapter of a trained super-adapter as a stock-PEFT LoRA (and optionally a
    merged model), with a model card and ``export_results.json``."""

    # shared fields (shears.stage), with this stage's defaults and help
    model: str | None = field(
        None,
        help="base (sparse) model the adapter was trained on: folder, .gguf, hub id or named "
        "default; default: the base_model recorded in the adapter",
    )
    output_dir: str = field(
        "", help="output folder (the PEFT adapter; `merged/` inside with --merge)"
    )
    dtype: str = field(
        "float32", help="dtype to load and merge in (float32 keeps the merge exact; bf16, fp16)"
    )
    device: str = field("cpu", help="device to export on (auto, cpu, cuda, cuda:N)")
    adapter: str = field("", help="super-adapter folder (the output of `shears train`)")
    sub_adapter: str = field(
        "heuristic",
        help="which sub-adapter: heuristic | max | min | a search_results.json (or its folder) | "
        "a {group: rank} JSON file | inline JSON",
    )
    merge: bool = field(False, help="also write the model with the sub-adapter merged (merged/)")
    keep_sparsity: bool | None = field(
        None,
        help="merge with the base's non-zero mask so every base zero stays zero; default: yes "
        "for a mask-aware adapter, no otherwise (the merged model is then dense)",
    )
    eval_results: str | None = field(
        None,
        help="evaluation JSON to show in the model card; default: eval_results.json next to the "
        "adapter or the search results, when present",
    )
    verify: bool = field(
        True,
        help="load the written adapter with stock PEFT (and the merged model) and compare logits "
        "with the in-memory sub-adapter on a short probe",
    )

    def __post_init__(self) -> None:
        if not self.adapter:
            raise ShearsError("no adapter given: pass --adapter DIR (a `shears train` output)")
        if not self.output_dir:
            raise ShearsError("no output folder given: pass --output-dir DIR")
        if not self.sub_adapter:
            raise ShearsError("sub_adapter is empty; use heuristic, max, min or a JSON file")
        if self.keep_sparsity is not None and not self.merge:
            raise ShearsError("--keep-sparsity / --no-keep-sparsity only apply with --merge")
        super().__post_init__()
