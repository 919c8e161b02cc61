"""Export: a chosen sub-adapter as a stock-PEFT LoRA, a sparsity-preserving merge, a model card."""

from shears.export.config import ExportConfig
from shears.export.merge import MergeStats, merge_adapter
from shears.export.peft_export import build_lora_config, export_peft_adapter, pattern_keys
from shears.export.report import model_card, parameter_summary
from shears.export.result import ExportResult
from shears.export.run import run as run_export

__all__ = [
    "ExportConfig",
    "ExportResult",
    "MergeStats",
    "build_lora_config",
    "export_peft_adapter",
    "merge_adapter",
    "model_card",
    "parameter_summary",
    "pattern_keys",
    "run_export",
]
