"""Training under FSDP (``accelerate launch`` with ``distributed_type: FSDP``): full tensors out of
sharded parameters and back, and FSDP2 on CPU.

FSDP2 (``fully_shard``) keeps every parameter as a ``DTensor`` sharded on dim 0 and gathers a
module's parameters for its forward, so an elastic layer still slices whole ``A[:r]`` /
``B[:, :r]`` there. Outside a forward, reading or writing the adapter needs the helpers below;
gathering (:func:`full_tensor`, :func:`trainable_state`, :func:`gathered`) is a collective under
FSDP: every rank calls it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from shears.adapters.elastic_lora import ElasticLoRALinear
from shears.errors import ShearsError

logger = logging.getLogger(__name__)

ADAPTER_PARAMS = ("lora_A", "lora_B")


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """``t`` whole: a sharded ``DTensor`` gathered from every rank, any other tensor as is."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters of ``model`` by name, whole, as contiguous CPU copies."""
    return {
        n: full_tensor(p.detach()).contiguous().cpu()
        for n, p in model.named_parameters()
        if p.requires_grad
    }


@torch.no_grad()
def copy_into(param: torch.Tensor, full: torch.Tensor) -> None:
    """Copy the whole tensor ``full`` (the same on every rank) into ``param``, sharded or not."""
    if isinstance(param, DTensor):
        local = distribute_tensor(
            full.to(param.device, param.dtype), param.device_mesh, param.placements,
            src_data_rank=None,  # every rank holds ``full``: no broadcast
        )  # fmt: skip
        param.to_local().copy_(local.to_local())
    else:
        param.copy_(full.to(param.device, param.dtype))


@contextlib.contextmanager
def gathered(layers: Mapping[str, ElasticLoRALinear]) -> Iterator[None]:
    """Inside: ``lora_A`` / ``lora_B`` of every layer whole (read-only copies of sharded ones), so
    code that reads the adapter (:meth:`SuperAdapter.save`) sees full tensors."""
    swapped: list[tuple[ElasticLoRALinear, str, nn.Parameter]] = []
    with torch.no_grad():
        for layer in layers.values():
            for key in ADAPTER_PARAMS:
                p = layer._parameters[key]
                if isinstance(p, DTensor):
                    swapped.append((layer, key, p))
                    layer._parameters[key] = nn.Parameter(p.full_tensor(), requires_grad=False)
    try:
        yield
    finally:
        for layer, key, p in swapped:
            layer._parameters[key] = p


def require_fsdp2(plugin) -> None:
    """One error line unless the FSDP plugin is FSDP2: FSDP1 flattens parameters into per-rank
    1-D views, which the adapter's slicing, saving and loading here do not handle."""
    if plugin.fsdp_version != 2:
        raise ShearsError(
            f"fsdp_version {plugin.fsdp_version} is not supported; allowed: 2 "
            "(fsdp_config: fsdp_version: 2, see examples/accelerate/fsdp.yaml)"
        )


def setup_fsdp(accelerator) -> bool:
    """Whether the run is under FSDP (FSDP2 only, :func:`require_fsdp2`).

    accelerate (1.15) maps ``distributed_type: FSDP`` with ``use_cpu: true`` to ``MULTI_CPU``
    (plain DDP) without a word; FSDP2 itself runs on CPU over gloo, so then the state is set as
    accelerate sets it on a GPU.
    """
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = accelerator.state
    plugin = getattr(state, "fsdp_plugin", None)
    if plugin is not None:
        require_fsdp2(plugin)
        return True
    wanted = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if not wanted or state.distributed_type != DistributedType.MULTI_CPU:
        return False
    plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables accelerate launch sets
    require_fsdp2(plugin)
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    logger.info("FSDP2 on CPU (gloo): %d processes", state.num_processes)
    return True
