"""Elastic-rank LoRA layers and the NLS search space."""

from shears.adapters.elastic_lora import ElasticLoRALinear, elastic_layers, inject_elastic_lora
from shears.adapters.search_space import Group, SearchSpace, SpaceConfig

__all__ = [
    "ElasticLoRALinear",
    "Group",
    "SearchSpace",
    "SpaceConfig",
    "elastic_layers",
    "inject_elastic_lora",
]
