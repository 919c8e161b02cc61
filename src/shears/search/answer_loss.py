"""The fast default objective: mean cross-entropy on the answer tokens of validation examples.

Three exact speed-ups, each switchable for measurement:
- ``gather_logits``: the output head runs only at the positions that predict an answer token (a
  forward pre-hook on the output embeddings gathers them), not over the whole prompt and vocab;
- ``reuse_prefix``: blocks below the first block a config changes are not recomputed
  (:class:`~shears.search.prefix_cache.BlockOutputCache`, relative to an anchor config);
- switching widths is a slice of the elastic layers in memory (``SearchSpace.apply``).
And one estimate: :meth:`AnswerLossObjective.estimate`, the first-order change of the loss for
removing or adding rank slices (:mod:`shears.search.screening`), for screening neighbours.

Data-parallel (:mod:`shears.evaluate.parallel`): process ``r`` of ``N`` runs validation batches
``r, r + N, ...`` (whole batches, as one process forms them); the per-batch NLL sums are gathered
and added in batch order on every process (:func:`sum_in_order`), so every process gets the score
one process computes, bit for bit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from shears.adapters.elastic_lora import ElasticLoRALinear
from shears.adapters.search_space import Config, SearchSpace
from shears.data.tokenize import IGNORE_INDEX, encode_example, pad_batch
from shears.errors import ShearsError
from shears.evaluate.parallel import SINGLE, DataParallel, merge_indexed
from shears.search.prefix_cache import BlockOutputCache
from shears.search.space_ops import group_blocks

logger = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]


def encode_validation(
    tokenizer,
    examples: list[dict],
    style: str = "alpaca",
    cutoff_len: int = 256,
    batch_size: int = 8,
) -> list[Batch]:
    """Tokenise examples with labels on the answer tokens only; batch similar lengths together.

    Examples whose answer is cut off entirely by ``cutoff_len`` are dropped (an error if none is
    left). Returns a list of right-padded batches (input_ids, attention_mask, labels).
    """
    if batch_size < 1:
        raise ShearsError(f"batch_size must be >= 1, got {batch_size}")
    feats = [
        encode_example(tokenizer, ex, style, cutoff_len, train_on_inputs=False) for ex in examples
    ]
    feats = [f for f in feats if any(label != IGNORE_INDEX for label in f["labels"][1:])]
    if not feats:
        raise ShearsError(
            f"no validation example has answer tokens within cutoff_len={cutoff_len}; "
            "raise --cutoff-len or check that the data has an output/answer"
        )
    feats.sort(key=lambda f: -len(f["input_ids"]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return [pad_batch(feats[i : i + batch_size], pad) for i in range(0, len(feats), batch_size)]


def sum_in_order(values: list[float]) -> float:
    """``values`` added left to right from ``0.0`` (not :func:`sum`, which compensates on Python
    3.12+): the exact float one process accumulates batch by batch."""
    total = 0.0
    for v in values:
        total += v
    return total


class AnswerLossObjective:
    """Validation loss on answer tokens for a sub-adapter config (lower is better)."""

    name = "loss"
    maximize = False

    def __init__(
        self,
        model: nn.Module,
        layers: dict[str, ElasticLoRALinear],
        space: SearchSpace,
        batches: list[Batch],
        reuse_prefix: bool = True,
        gather_logits: bool = True,
        parallel: DataParallel = SINGLE,
    ) -> None:
        if not batches:
            raise ShearsError("the loss objective needs at least one validation batch")
        self.model = model
        self.layers = layers
        self.space = space
        self.parallel = parallel
        self.n_tokens = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches)
        dev = next(model.parameters()).device
        # this process's batches on the model's device; the others' stay where they are, unused
        self.batches = [
            {k: v.to(dev) for k, v in b.items()} if parallel.mine(bi) else b
            for bi, b in enumerate(batches)
        ]
        self.mine = [bi for bi in range(len(batches)) if parallel.mine(bi)]
        self.gather_logits = gather_logits
        self.cache = BlockOutputCache(model) if reuse_prefix else None
        self.anchor: Config | None = None
        prefix, blocks = (self.cache.prefix, self.cache.blocks) if self.cache else _blocks_of(model)
        self.n_blocks = len(blocks)
        self.group_block = group_blocks(space, prefix, self.n_blocks)
        # measured work: decoder blocks actually run vs a full forward for every call
        self.blocks_run = 0
        self.calls = 0
        self._gathered = False

    # ------------------------------------------------------------------ forward pieces
    @contextlib.contextmanager
    def _gather(self, sel: torch.Tensor) -> Iterator[None]:
        """Inside, the output head sees only the hidden states at ``sel`` (batch, seq) bool."""
        head = self.model.get_output_embeddings() if self.gather_logits else None
        if head is None:
            yield
            return

        def pre_hook(_mod, args):
            hidden = args[0]  # (batch, seq, hidden)
            if hidden.dim() == 3 and hidden.shape[:2] == sel.shape:
                self._gathered = True
                return (hidden[sel].unsqueeze(0), *args[1:])  # (1, n_answer, hidden)
            return None

        handle = head.register_forward_pre_hook(pre_hook)
        try:
            yield
        finally:
            handle.remove()

    def batch_nll(self, batch: Batch) -> torch.Tensor:
        """Summed NLL (float32 scalar) over the answer tokens of one batch, in the current state
        of the model (active ranks, any block replay in force)."""
        labels = batch["labels"]  # (batch, seq)
        sel = torch.zeros_like(labels, dtype=torch.bool)
        sel[:, :-1] = labels[:, 1:] != IGNORE_INDEX  # positions that predict an answer token
        targets = labels[:, 1:][sel[:, :-1]]  # (n_answer,)
        self._gathered = False
        with self._gather(sel):
            logits = self.model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                use_cache=False,
            ).logits
        # gathered: (1, n_answer, vocab); else the head ran everywhere (disabled or bypassed)
        flat = logits[0] if self._gathered else logits[sel]
        return F.cross_entropy(flat.float(), targets, reduction="sum")

    def first_changed_block(self, config: Config) -> int:
        """First block whose ranks differ from the anchor's (``n_blocks`` if none, 0 if no
        anchor)."""
        if self.cache is None or self.anchor is None:
            return 0
        changed = [self.group_block[g] for g, r in config.items() if self.anchor[g] != r]
        return min(changed, default=self.n_blocks)

    # ------------------------------------------------------------------ objective
    @torch.no_grad()
    def __call__(self, config: Config) -> float:
        self.space.apply(self.layers, config)
        k = self.first_changed_block(config)
        done: list[tuple[int, float]] = []
        for bi in self.mine:
            ctx = self.cache.reuse(bi, k) if self.cache is not None else contextlib.nullcontext()
            with ctx:
                done.append((bi, float(self.batch_nll(self.batches[bi]))))
        total = sum_in_order(merge_indexed(self.parallel.gather(done), len(self.batches)))
        self.calls += 1
        self.blocks_run += self.n_blocks - min(k, self.n_blocks)
        return total / self.n_tokens

    @torch.no_grad()
    def set_anchor(self, config: Config) -> None:
        """Remember the block outputs of ``config`` (only blocks from the first changed one)."""
        if self.cache is None:
            return
        k = self.first_changed_block(config)
        if self.anchor is not None and k >= self.n_blocks:
            return
        self.space.apply(self.layers, config)
        for bi in self.mine:
            with self.cache.capture(bi, start=k), self.cache.reuse(bi, k):
                self.batch_nll(self.batches[bi])
        self.blocks_run += self.n_blocks - k
        self.anchor = dict(config)

    def estimate(self, config: Config, candidates: list[Config]) -> list[float]:
        """First-order estimated losses of ``candidates`` around ``config`` (one forward and
        backward at ``config``)."""
        from shears.search.screening import estimate_candidates, rank_gradients

        self.space.apply(self.layers, config)
        loss, grads = rank_gradients(
            self.layers, self.batches, self.batch_nll, self.n_tokens, self.parallel
        )
        self.blocks_run += 3 * self.n_blocks  # a backward costs about two forwards
        return estimate_candidates(self.space, grads, config, candidates, loss)


def _blocks_of(model: nn.Module):
    from shears.models import find_decoder_blocks

    return find_decoder_blocks(model)
