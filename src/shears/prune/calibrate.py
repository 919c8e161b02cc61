"""The pruning engine: sequential, block-by-block calibration with hooks (no pruning math here).

How a run goes (:class:`SequentialPruner`):

1. **Capture.** For every calibration micro-batch, run the model with a forward pre-hook on every
   decoder block that records how the model calls it: the hidden states entering block 0 and,
   for every block, the other positional and keyword arguments (attention mask, position
   embeddings / ids, ... whatever that architecture passes; Gemma-3 passes a different mask to its
   sliding-window layers, so every block gets its own record). Blocks 1..L-2 are replaced by a
   pass-through while capturing and the pre-hook of the last block raises :class:`StopForward`,
   so capture costs about one block's compute and never computes the LM head.
2. **Per block**, in order: forward hooks on the block's target linears accumulate float32
   statistics of their inputs over all micro-batches (Wanda: sum of squares per input column;
   SparseGPT: ``X X^T``) while the still-dense block runs; the block's targets are pruned; the
   pruned block is re-run and its outputs replace its inputs, micro-batch by micro-batch, as the
   inputs of the next block. Each block therefore sees the outputs of the already pruned blocks.

Memory: the calibration activations of one block boundary, ``nsamples x seqlen x hidden`` in the
model dtype (SmolLM2-135M, 128 x 512 tokens, fp32: 151 MB), kept on the model's device or, with
``offload_activations``, in CPU memory; plus one micro-batch of the block's intermediate
activations, the per-block call arguments (deduplicated: identical tensors are stored once), and
the statistics of one block's targets (SparseGPT: one ``in x in`` float32 matrix per distinct
input; layers fed the same tensor, like q/k/v, share one). No buffer has a hidden fixed size.
Magnitude pruning reads no data and skips all of this. With ``--offload cpu|disk``
(:mod:`shears.prune.stream`) only the block at work (and, while capturing, block 0 and the modules
outside the blocks) has its weights on the compute device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from shears.errors import ShearsError
from shears.models import find_decoder_blocks, in_out_features, weight_out_in
from shears.precision import autocast, autocast_dtype
from shears.prune.config import PruneConfig
from shears.prune.magnitude import magnitude_mask
from shears.prune.owl import outlier_ratio, owl_profile
from shears.prune.sparsegpt import HessianStats, sparsegpt_prune
from shears.prune.stream import BlockStream
from shears.prune.wanda import ColumnNormStats, wanda_mask, wanda_scores
from shears.sparsity import weight_stats

logger = logging.getLogger(__name__)


class StopForward(Exception):
    """Raised on purpose by the capture pre-hook of the last decoder block to end a model forward
    once every block's call arguments are recorded (nothing after the blocks is computed).

    Always caught inside :func:`capture_block_calls`; it never reaches user code.
    """


@dataclass
class BlockCall:
    """How the model calls one decoder block: the arguments besides the hidden states."""

    args: tuple
    kwargs: dict
    hidden_key: str | None = None  # None: hidden states are the first positional argument


def call_block(block: nn.Module, hidden: torch.Tensor, call: BlockCall) -> torch.Tensor:
    """Run ``block`` on ``hidden`` with the recorded arguments; return its hidden-state output."""
    if call.hidden_key is None:
        out = block(hidden, *call.args, **call.kwargs)
    else:
        out = block(*call.args, **{**call.kwargs, call.hidden_key: hidden})
    return out[0] if isinstance(out, (tuple, list)) else out


def _dedup(obj: Any, pool: list[torch.Tensor]) -> Any:
    """Replace tensors equal to one already in ``pool`` by that one (saves per-batch copies)."""
    if isinstance(obj, torch.Tensor):
        for t in pool:
            if (
                t.shape == obj.shape
                and t.dtype == obj.dtype
                and t.device == obj.device
                and (t is obj or torch.equal(t, obj))
            ):
                return t
        pool.append(obj)
        return obj
    if isinstance(obj, tuple):
        return tuple(_dedup(o, pool) for o in obj)
    if isinstance(obj, list):
        return [_dedup(o, pool) for o in obj]
    if isinstance(obj, dict):
        return {k: _dedup(v, pool) for k, v in obj.items()}
    return obj


def _split_hidden(args: tuple, kwargs: dict) -> tuple[torch.Tensor, BlockCall]:
    if args:
        return args[0], BlockCall(tuple(args[1:]), dict(kwargs))
    if "hidden_states" in kwargs:
        rest = dict(kwargs)
        hidden = rest.pop("hidden_states")
        return hidden, BlockCall((), rest, "hidden_states")
    raise ShearsError("cannot find the hidden states passed to the first decoder block")


class _CallRecorder:
    """The capture pass's state: block 0's inputs and each block's call, per micro-batch.

    ``pre_hook(i)`` records block ``i``'s call (block 0: also its hidden states) and, at the last
    block, raises :class:`StopForward`; ``passthrough`` stands in for blocks 1..L-2 with the
    output structure that the real block 0 returned (``first_forward``).
    """

    def __init__(self, first_block: nn.Module, n_blocks: int, store: torch.device | None) -> None:
        self.n_blocks = n_blocks
        self.store = store
        self.hidden: list[torch.Tensor] = []
        self.calls: list[list[BlockCall]] = []
        self._pool: list[torch.Tensor] = []
        self._current: dict[int, BlockCall] = {}
        self._first_out: dict[str, Any] = {}
        self._original_first = first_block.forward

    def pre_hook(self, idx: int) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            h, call = _split_hidden(args, kwargs)
            self._current[idx] = BlockCall(
                _dedup(call.args, self._pool), _dedup(call.kwargs, self._pool), call.hidden_key
            )
            if idx == 0:
                self.hidden.append(h.detach().to(self.store) if self.store else h.detach())
            if idx == self.n_blocks - 1:
                raise StopForward

        return hook

    def passthrough(self, *args: Any, **kwargs: Any) -> Any:
        h, _ = _split_hidden(args, kwargs)
        out0 = self._first_out["out"]
        return (h, *out0[1:]) if isinstance(out0, tuple) else h

    def first_forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self._original_first(*args, **kwargs)  # real block 0: tells the output structure
        self._first_out["out"] = out
        return out

    def record(self, model: nn.Module, input_ids: torch.Tensor) -> None:
        """One capture forward of the micro-batch ``input_ids`` (batch, seq)."""
        self._current.clear()
        try:
            model(input_ids=input_ids, use_cache=False)
        except StopForward:
            pass
        else:  # pragma: no cover - the last block always raises
            raise RuntimeError("capture pass did not reach the last decoder block")
        self.calls.append([self._current[i] for i in range(self.n_blocks)])
        self._first_out.clear()


@contextmanager
def _capturing(blocks: nn.ModuleList, rec: _CallRecorder) -> Iterator[None]:
    """Install the recorder's pre-hooks and stand-in forwards on ``blocks``; restore them after."""
    saved = [blk.__dict__.get("forward") for blk in blocks]
    handles = [
        blk.register_forward_pre_hook(rec.pre_hook(i), with_kwargs=True)
        for i, blk in enumerate(blocks)
    ]
    try:
        if len(blocks) > 1:
            blocks[0].forward = rec.first_forward
        for blk in list(blocks)[1:-1]:
            blk.forward = rec.passthrough
        yield
    finally:
        for h in handles:
            h.remove()
        for blk, fwd in zip(blocks, saved, strict=True):
            blk.__dict__.pop("forward", None)
            if fwd is not None:
                blk.forward = fwd


@torch.no_grad()
def capture_block_calls(
    model: nn.Module,
    blocks: nn.ModuleList,
    input_ids: torch.Tensor,
    batch_size: int,
    store_device: torch.device | None = None,
) -> tuple[list[torch.Tensor], list[list[BlockCall]]]:
    """Hidden states entering block 0 and every block's call arguments, per micro-batch.

    Returns ``(hidden, calls)``: ``hidden[k]`` (batch, seq, hidden) on ``store_device`` (default:
    where the model put it) and ``calls[k][i]`` for micro-batch ``k`` and block ``i``.
    """
    rec = _CallRecorder(blocks[0], len(blocks), store_device)
    with _capturing(blocks, rec):
        for start in range(0, input_ids.shape[0], batch_size):
            rec.record(model, input_ids[start : start + batch_size].to(input_ids.device))
    return rec.hidden, rec.calls


class InputStatsHooks:
    """Forward hooks that feed each target's input to a statistics object (``stats[name]``).

    Targets called one after another with the *same* input tensor (q/k/v, gate/up) share one
    statistics object, so it is computed and stored once.
    """

    def __init__(self, modules: dict[str, nn.Module], make_stats: Callable[[nn.Module], Any]):
        self.stats: dict[str, Any] = {}
        self._last: tuple[torch.Tensor, str] | None = None
        self._handles = [
            mod.register_forward_hook(self._hook(name, mod, make_stats))
            for name, mod in modules.items()
        ]

    def _hook(self, name: str, mod: nn.Module, make_stats: Callable) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            x = inputs[0]  # (batch, seq, in)
            if self._last is not None and self._last[0] is x:
                src = self.stats[self._last[1]]
                if self.stats.setdefault(name, src) is src:
                    return
            if name not in self.stats:
                self.stats[name] = make_stats(mod)
            with torch.autocast(x.device.type, enabled=False):  # statistics: float32 maths
                self.stats[name].update(x)
            self._last = (x, name)

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._last = None


def make_stats(method: str, module: nn.Module) -> Any:
    """The statistics object ``method`` needs for ``module``'s inputs (on the weight's device)."""
    in_f, _ = in_out_features(module)
    dev = module.weight.device
    if method == "wanda":
        return ColumnNormStats(in_f, dev)
    if method == "sparsegpt":
        return HessianStats(in_f, dev)
    raise ValueError(f"method {method!r} needs no statistics")


@torch.no_grad()
def prune_layer(
    module: nn.Module,
    method: str,
    stats: Any,
    sparsity: float,
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> None:
    """Prune one ``nn.Linear`` / ``Conv1D`` in place with ``method`` and its input ``stats``."""
    w = weight_out_in(module)  # (out, in) view; a transposed view for Conv1D
    if method == "magnitude":
        w.masked_fill_(magnitude_mask(w, sparsity, nm), 0.0)
    elif method == "wanda":
        w.masked_fill_(wanda_mask(w, stats.norms(), sparsity, nm), 0.0)
    elif method == "sparsegpt":
        new = sparsegpt_prune(w, stats.hessian(), sparsity, nm, blocksize, percdamp)
        w.copy_(new.to(w.dtype))
    else:
        raise ValueError(f"unknown pruning method {method!r}")


class SequentialPruner:
    """Prunes ``targets`` of ``model`` block by block (see the module docstring), as ``cfg``
    says: its method, sparsity and pattern, calibration micro-batch, SparseGPT block size and
    dampening, and where the activations are kept.

    ``targets``: full module name -> linear module (from :func:`shears.models.find_targets`).
    ``stream``: where the blocks' weights live and how they come to the compute device
    (:mod:`shears.prune.stream`; default: they stay where the model is). The calibration forward
    passes run under ``cfg.precision``'s autocast (:attr:`autocast`); the statistics, the
    pruning maths and the weights stay in their own dtypes.
    """

    def __init__(
        self,
        model: nn.Module,
        targets: dict[str, nn.Module],
        cfg: PruneConfig,
        progress: bool = True,
        on_block_stats: Callable[[int, dict[str, Any]], None] | None = None,
        stream: BlockStream | None = None,
    ) -> None:
        self.model = model
        self.targets = targets
        self.cfg = cfg
        self.progress = progress
        self.on_block_stats = on_block_stats  # called with (block index, stats by name)
        self.prefix, self.blocks = find_decoder_blocks(model)
        self.profile: list[dict[str, Any]] | None = None  # OWL: per block, set by run()
        self._rates: dict[int, float] = {}  # block index -> sparsity (OWL); default cfg.sparsity
        self.stream = stream or BlockStream(model)
        weights = next(p.dtype for p in model.parameters() if p.is_floating_point())
        self.autocast = autocast_dtype(cfg.precision, self.stream.device, "prune", weights)
        self.layers: dict[str, dict[str, Any]] = {}  # per pruned target, as it was pruned

    def _block_targets(self, idx: int) -> dict[str, nn.Module]:
        head = f"{self.prefix}.{idx}."
        return {n: m for n, m in self.targets.items() if n.startswith(head)}

    def _prune(self, name: str, module: nn.Module, stats: Any, idx: int) -> None:
        if stats is None and self.cfg.method != "magnitude":
            raise ShearsError(f"target {name!r} received no input during calibration")
        c = self.cfg
        rate = self._rates.get(idx, c.sparsity)
        prune_layer(module, c.method, stats, rate, c.nm, c.blocksize, c.percdamp)
        self.layers[name] = {**weight_stats(module.weight), "block": idx}
        logger.debug("pruned %s: %.4f zeros", name, self.layers[name]["sparsity"])

    @torch.no_grad()
    def run(self, input_ids: torch.Tensor | None = None) -> dict[str, dict[str, Any]]:
        """Prune every target; ``input_ids`` (nsamples, seqlen) unless the method is magnitude.

        Returns per-layer ``{"zeros", "numel", "sparsity", "block"}`` in model order.
        """
        per_block = [self._block_targets(i) for i in range(len(self.blocks))]
        was_training = self.model.training
        self.model.eval()
        try:
            if self.cfg.needs_calibration and input_ids is None:
                raise ValueError(f"{self.cfg.method!r} / OWL need calibration input_ids")
            if self.cfg.sparsity_profile == "owl":
                self.profile = self._owl_profile(input_ids, per_block)
                self._rates = {p["block"]: p["sparsity"] for p in self.profile}
            if self.cfg.method == "magnitude":
                for idx, block_targets in enumerate(
                    tqdm(per_block, desc="prune blocks", disable=not self.progress)
                ):
                    if not block_targets:
                        continue
                    with self.stream.block(idx):
                        for name, mod in block_targets.items():
                            self._prune(name, mod, None, idx)
            else:
                self._run_sequential(input_ids, per_block)
        finally:
            self.model.train(was_training)
        return {name: self.layers[name] for targets in per_block for name in targets}

    def _run_sequential(
        self, input_ids: torch.Tensor, per_block: list[dict[str, nn.Module]]
    ) -> None:
        def visit(idx: int, block_targets: dict[str, nn.Module], stats: dict[str, Any]) -> None:
            if self.on_block_stats is not None:
                self.on_block_stats(idx, stats)
            for name, mod in block_targets.items():
                self._prune(name, mod, stats.get(name), idx)

        self._sequential(input_ids, per_block, self.cfg.method, visit)

    def _owl_profile(
        self, input_ids: torch.Tensor, per_block: list[dict[str, nn.Module]]
    ) -> list[dict[str, Any]]:
        """OWL's first pass over the still dense model: every block's outlier ratio of Wanda
        scores (nothing pruned), then the per-block sparsities (:func:`owl_profile`)."""
        ratios: dict[int, float] = {}

        def visit(idx: int, block_targets: dict[str, nn.Module], stats: dict[str, Any]) -> None:
            scores = []
            for name, mod in block_targets.items():
                if name not in stats:
                    raise ShearsError(f"target {name!r} received no input during calibration")
                scores.append(wanda_scores(weight_out_in(mod), stats[name].norms()))
            ratios[idx] = outlier_ratio(scores, self.cfg.owl_m)

        self._sequential(input_ids, per_block, "wanda", visit, "OWL outlier ratios", True)
        blocks = sorted(ratios)
        params = [sum(m.weight.numel() for m in per_block[i].values()) for i in blocks]
        rates = owl_profile(
            [ratios[i] for i in blocks], params, self.cfg.sparsity, self.cfg.owl_lambda
        )
        profile = [
            {"block": i, "outlier_ratio": ratios[i], "sparsity": r, "parameters": p}
            for i, r, p in zip(blocks, rates, params, strict=True)
        ]
        logger.info("OWL block sparsities: %s", ", ".join(f"{r:.3f}" for r in rates))
        return profile

    def _sequential(
        self,
        input_ids: torch.Tensor,
        per_block: list[dict[str, nn.Module]],
        stats_method: str,
        visit: Callable[[int, dict[str, nn.Module], dict[str, Any]], None],
        desc: str = "",
        read_only: bool = False,
    ) -> None:
        """Feed ``input_ids`` through the blocks in order: per block with targets, collect the
        ``stats_method`` input statistics of its targets in a pass of the block as it is, call
        ``visit(idx, targets, stats)`` (which may prune), then run the block again and pass its
        outputs on as the next block's inputs. ``read_only``: ``visit`` changes no weight, so
        the statistics pass's outputs are passed on and the second run is skipped.

        The stream brings one block at a time to the device; forward passes run under
        :attr:`autocast`, the pruning (``visit``) outside it."""
        device = self.stream.device
        store = torch.device("cpu") if self.cfg.offload_activations else None
        with self.stream.capturing(), autocast(self.autocast, device):
            hidden, calls = capture_block_calls(
                self.model, self.blocks, input_ids.to(device), self.cfg.batch_size, store
            )
        last = max(i for i, t in enumerate(per_block) if t)
        desc = desc or f"{self.cfg.method} blocks"
        bar = tqdm(total=last + 1, desc=desc, disable=not self.progress)
        for idx in range(last + 1):
            block_targets = per_block[idx]
            with self.stream.block(idx, write=not read_only) as block:
                bdev = next(block.parameters()).device  # the device (several: a device map)
                if block_targets:
                    hooks = InputStatsHooks(block_targets, lambda m: make_stats(stats_method, m))
                    try:
                        with autocast(self.autocast, device):
                            for k, h in enumerate(hidden):  # dense pass: statistics only
                                out = call_block(block, h.to(bdev), calls[k][idx])
                                if read_only and idx < last:
                                    hidden[k] = out.to(store) if store is not None else out
                    finally:
                        hooks.remove()
                    visit(idx, block_targets, hooks.stats)
                    del hooks
                if idx < last and not (read_only and block_targets):  # next block's inputs
                    with autocast(self.autocast, device):
                        for k, h in enumerate(hidden):
                            out = call_block(block, h.to(bdev), calls[k][idx])
                            hidden[k] = out.to(store) if store is not None else out
            bar.update(1)
        bar.close()
