"""Elastic-rank LoRA layers, their configs, the NLS search space and the super-adapter folder."""

from shears.adapters.config import ElasticLoraConfig, SpaceConfig
from shears.adapters.elastic_lora import ElasticLoRALinear, elastic_layers, inject_elastic_lora
from shears.adapters.io import SuperAdapter
from shears.adapters.search_space import Group, SearchSpace

__all__ = [
    "ElasticLoRALinear",
    "ElasticLoraConfig",
    "Group",
    "SearchSpace",
    "SpaceConfig",
    "SuperAdapter",
    "elastic_layers",
    "inject_elastic_lora",
]
