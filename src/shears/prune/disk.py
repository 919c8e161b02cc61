"""``--offload disk``: the weights of the decoder blocks stay in the model folder's
``.safetensors`` (memory-mapped reads) until their block is at work.

The model's modules are built without weights (``accelerate.init_empty_weights``: parameters on
the meta device, buffers such as rotary tables computed as usual); the modules outside the blocks
are read into CPU memory; each block is read onto the compute device, calibrated, pruned, written
to a shard in a temporary offload folder and freed. Saving moves those shards into the output
next to one shard of the rest, with their ``model.safetensors.index.json``. Only a local Hugging
Face folder whose tensors carry the model's own names qualifies (checked before any weight is
read); anything else is one clear error line.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shears.errors import ShearsError
from shears.models import LOAD_ERRORS, NAMED_DEFAULTS, get_submodule_parent
from shears.prune.config import PruneConfig
from shears.prune.stream import (
    CpuStream,
    module_tensors,
    own_tensors,
    tensors_bytes,
)
from shears.sparsity import nonzeros
from shears.utils import resolve_device, resolve_dtype

logger = logging.getLogger(__name__)

SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_SINGLE = "model.safetensors"


def checkpoint_files(folder: Path) -> dict[str, Path]:
    """``{tensor name: .safetensors file}`` of a Hugging Face folder (index or single file)."""
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {k: folder / v for k, v in weight_map.items()}
    single = folder / SAFETENSORS_SINGLE
    if single.is_file():
        from safetensors import safe_open

        with safe_open(str(single), framework="pt") as fh:
            return {k: single for k in fh.keys()}  # noqa: SIM118 - safe_open is no mapping
    return {}


def _tied_groups(model: nn.Module) -> dict[str, list[str]]:
    """``{first name: [every name]}`` of the state-dict tensors of ``model`` (tied weights share
    one group)."""
    groups: dict[int, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(t), []).append(name)
    return {names[0]: names for names in groups.values()}


def check_disk_source(cfg: PruneConfig) -> None:
    """``--offload disk`` reads a local Hugging Face folder's ``.safetensors``; anything else is
    one clear error line, before any weight is read."""
    spec = cfg.model
    if cfg.gguf_file or spec.endswith(".gguf"):
        raise ShearsError(
            f"--offload disk reads .safetensors block by block, not GGUF ({spec!r}); use "
            "--offload cpu, or convert the model to a Hugging Face folder first"
        )
    if spec in NAMED_DEFAULTS:
        return  # converted once into a safetensors folder in the cache
    folder = Path(spec)
    if not folder.is_dir():
        raise ShearsError(
            f"--offload disk needs a local Hugging Face model folder, not {spec!r}; download it "
            "first (hf download) or use --offload cpu"
        )
    if not checkpoint_files(folder):
        raise ShearsError(
            f"--offload disk needs {SAFETENSORS_SINGLE} or {SAFETENSORS_INDEX} in {spec!r} "
            "(.bin weights are not memory-mapped); use --offload cpu"
        )


def check_offload_dir(cfg: PruneConfig) -> Path:
    """The folder the temporary offload folder goes into; it must be (creatable and) writable."""
    base = Path(cfg.offload_dir or Path(cfg.output_dir).expanduser().resolve().parent)
    flag = "--offload-dir" if cfg.offload_dir else "the output folder's parent (--offload-dir)"
    try:
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise ShearsError(
            f"{flag} {str(base)!r} is not writable ({exc.strerror or exc}); give a writable "
            "folder with room for the pruned model"
        ) from exc
    return base


class DiskStream(CpuStream):
    """``--offload disk``: weights read from the model folder's ``.safetensors`` one block at a
    time; pruned blocks written as shards into a temporary folder inside ``base`` (removed by
    :meth:`close`) and moved into the output by :meth:`save_model`."""

    mode = "disk"

    def __init__(self, model: nn.Module, source: Path, device: torch.device, base: Path) -> None:
        self.files = checkpoint_files(source)
        self._groups = _tied_groups(model)
        self._open: dict[Path, Any] = {}
        self._exit = ExitStack()
        self.tmp = Path(tempfile.mkdtemp(prefix=".shears-offload-", dir=base))
        missing = [
            k for k, names in self._groups.items() if not any(n in self.files for n in names)
        ]
        if missing:
            self.close()
            raise ShearsError(
                f"--offload disk: {str(source)!r} holds no tensor {missing[0]!r} under the "
                "model's own name (an older naming?); use --offload cpu"
            )
        super().__init__(model, device)
        self.home = torch.device("cpu")
        self.source = source
        self.block_bytes = [  # meta tensors: the bytes they will take
            tensors_bytes(module_tensors(b)) for b in self.blocks
        ]
        self.written: dict[int, dict[str, int]] = {}  # block -> parameter counts, bytes
        self._outside_keys = [k for k in self._groups if not self._in_block(k)]
        try:
            self._load(self._outside_keys, self.home)
        except BaseException:
            self.close()
            raise
        self.outside_bytes = tensors_bytes([t for m in self._outside for t in own_tensors(m)])

    def _in_block(self, key: str) -> bool:
        return key.startswith(self.prefix + ".")

    def _block_keys(self, idx: int) -> list[str]:
        head = f"{self.prefix}.{idx}."
        return [k for k in self._groups if k.startswith(head)]

    def _read(self, names: list[str]) -> torch.Tensor:
        from safetensors import safe_open

        name = next(n for n in names if n in self.files)
        path = self.files[name]
        try:
            if path not in self._open:
                self._open[path] = self._exit.enter_context(safe_open(str(path), framework="pt"))
            return self._open[path].get_tensor(name)
        except LOAD_ERRORS as exc:
            raise ShearsError(
                f"--offload disk: cannot read {name!r} from {str(path)!r} (damaged or missing "
                f"file?): {' '.join(str(exc).split()) or type(exc).__name__}"
            ) from exc

    def _load(self, keys: list[str], device: torch.device) -> None:
        """Read ``keys`` (and their tied names) onto ``device`` in the model's dtypes."""
        for key in keys:
            names = self._groups[key]
            current = _get(self.model, key)
            t = self._read(names)
            if tuple(t.shape) != tuple(current.shape):
                raise ShearsError(
                    f"--offload disk: {key!r} in {str(self.source)!r} has shape "
                    f"{tuple(t.shape)}, but the model's config.json makes it "
                    f"{tuple(current.shape)}"
                )
            t = t.to(device=device, dtype=current.dtype if t.is_floating_point() else t.dtype)
            _assign(self.model, names, t)

    def _free(self, idx: int) -> None:
        for key in self._block_keys(idx):
            t = _get(self.model, key)
            _assign(self.model, self._groups[key], torch.empty_like(t, device="meta"))
        blk = self.blocks[idx]
        for m in blk.modules():  # non-persistent buffers (built at init): back home
            for name, b in m._buffers.items():
                if b is not None and b.device.type != "meta":
                    m._buffers[name] = b.to(self.home)

    def _materialise(self, idx: int, device: torch.device) -> nn.Module:
        self._load(self._block_keys(idx), device)
        blk = self.blocks[idx]
        for m in blk.modules():
            for name, b in m._buffers.items():
                if b is not None and b.device.type != "meta":
                    m._buffers[name] = b.to(device)
        return blk

    def _write(self, idx: int) -> None:
        """Block ``idx``'s tensors into its shard; its parameter counts and bytes recorded."""
        from safetensors.torch import save_file

        keys = self._block_keys(idx)
        tensors = {k: _get(self.model, k).detach().to("cpu").contiguous() for k in keys}
        save_file(tensors, str(self._shard(idx)), {"format": "pt"})
        params = list(self.blocks[idx].parameters())
        self.written[idx] = {
            "parameters": sum(p.numel() for p in params),
            "nonzero_parameters": sum(nonzeros(p) for p in params),
            "bytes": sum(t.numel() * t.element_size() for t in tensors.values()),
        }

    def _shard(self, idx: int) -> Path:
        return self.tmp / f"block-{idx:05d}.safetensors"

    @contextmanager
    def block(self, idx: int, write: bool = True) -> Iterator[nn.Module]:
        blk = self._materialise(idx, self.device)
        self._place(self.block_bytes[idx])
        try:
            yield blk
            if write:
                self._write(idx)
        finally:
            self._free(idx)
            self._evict(self.block_bytes[idx])

    def finish(self) -> None:
        """Write the blocks no pruning pass wrote (no targets), read into CPU memory."""
        for idx in range(len(self.blocks)):
            if idx not in self.written:
                self._materialise(idx, self.home)
                try:
                    self._write(idx)
                finally:
                    self._free(idx)

    def count_parameters(self) -> dict[str, int]:
        self.finish()
        in_blocks = {id(p) for b in self.blocks for p in b.parameters()}
        outside = [p for p in self.model.parameters() if id(p) not in in_blocks]
        total = sum(p.numel() for p in outside) + sum(
            w["parameters"] for w in self.written.values()
        )
        nonzero = sum(nonzeros(p) for p in outside) + sum(
            w["nonzero_parameters"] for w in self.written.values()
        )
        return {"parameters": total, "nonzero_parameters": nonzero}

    def save_model(self, folder: Path) -> None:
        """The written block shards and one shard of the rest, with their index and config."""
        from safetensors.torch import save_file

        self.finish()
        n = len(self.blocks) + 1
        rest = {k: _get(self.model, k).detach().contiguous() for k in self._outside_keys}
        name = f"model-00001-of-{n:05d}.safetensors"
        save_file(rest, str(folder / name), {"format": "pt"})
        weight_map = dict.fromkeys(rest, name)
        total = sum(t.numel() * t.element_size() for t in rest.values())
        for idx in range(len(self.blocks)):
            name = f"model-{idx + 2:05d}-of-{n:05d}.safetensors"
            weight_map.update(dict.fromkeys(self._block_keys(idx), name))
            total += self.written[idx]["bytes"]
            shutil.move(str(self._shard(idx)), str(folder / name))
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (folder / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2) + "\n")
        self.model.config.architectures = [type(self.model).__name__]
        self.model.config.save_pretrained(folder)
        gen = getattr(self.model, "generation_config", None)
        if gen is not None and self.model.can_generate():
            gen.save_pretrained(folder)

    def close(self) -> None:
        self._exit.close()
        self._open.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _get(model: nn.Module, key: str) -> torch.Tensor:
    parent, attr = get_submodule_parent(model, key)
    return getattr(parent, attr)


def _assign(model: nn.Module, names: list[str], t: torch.Tensor) -> None:
    """Make ``t`` the tensor of every name in ``names`` (a parameter stays a frozen parameter)."""
    shared: nn.Parameter | None = None
    for key in names:
        parent, attr = get_submodule_parent(model, key)
        if attr in parent._parameters:
            if shared is None:
                shared = nn.Parameter(t, requires_grad=False)
            parent._parameters[attr] = shared
        else:
            parent._buffers[attr] = t


def open_disk(cfg: PruneConfig) -> tuple[nn.Module, object, DiskStream]:
    """``(model, tokenizer, stream)`` of ``--offload disk``: the modules built without weights,
    those outside the blocks read into CPU memory, the blocks left on disk."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from shears.models import resolve_named_default

    check_disk_source(cfg)
    base = check_offload_dir(cfg)
    device = resolve_device(cfg.device)
    source = resolve_named_default(cfg.model) if cfg.model in NAMED_DEFAULTS else Path(cfg.model)
    trust = cfg.trust_remote_code
    config = AutoConfig.from_pretrained(source, trust_remote_code=trust)
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(
            config, dtype=resolve_dtype(cfg.dtype, device), trust_remote_code=trust
        )
    model.tie_weights()  # the empty-weights init leaves tied weights as separate meta tensors
    model.eval()
    tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    stream = DiskStream(model, source, device, base)
    logger.info(
        "--offload disk: %d blocks read from %s one at a time; pruned blocks kept in %s",
        len(stream.blocks),
        source,
        stream.tmp,
    )
    return model, tok, stream
