"""Where data comes from: :class:`DataSpec`, one description of a data source for every stage.

``source`` is one of:

- ``gym``: a reasoning-gym generator (``path`` = ``name?option=value&...``), split into disjoint
  train / validation / test (by template, else by question hash); ``size`` problems are generated
  from ``seed``;
- ``json``: a JSON list (or ``{"data": [...]}``) or a JSONL file of records;
- ``hf``: a ``datasets`` dataset: a hub id (with ``config`` and ``split``), a folder saved with
  ``save_to_disk``, or a folder of data files;
- ``text``: plain text: a text file read in chunks of lines, or ``default`` (offline text generated
  from reasoning-gym problems, in two disjoint splits ``calibration`` and ``heldout``).

``fields`` maps our field names to the source's (``{"instruction": "question"}``; for text,
``{"text": column}``). Stage configs give the same settings as ``data`` (the source string, see
:meth:`DataSpec.parse`), ``data_config``, ``data_split``, ``data_fields`` and ``data_seed``; the
text sources of pruning (``calibration``, ``ppl_source``) are described by :meth:`DataSpec.text`.
Reading is :mod:`shears.data.sources`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from shears.errors import ShearsError
from shears.inputs import check_text_file

SOURCES = ("gym", "json", "hf", "text")
DEFAULT_TEXT = "default"
JSON_SUFFIXES = (".json", ".jsonl")
_PATH_SUFFIXES = (".txt", ".md", ".text", ".csv", ".json", ".jsonl", ".parquet", ".arrow")


@dataclass(frozen=True)
class DataSpec:
    """One data source: what :func:`shears.data.sources.load_examples` reads."""

    source: str  # gym | json | hf | text
    path: str  # generator, file, dataset id or folder, or "default" text
    config: str | None = None  # `datasets` config name
    split: str = "train"  # reasoning-gym / `datasets` split; default text: calibration | heldout
    fields: dict[str, str] = dataclasses.field(default_factory=dict)  # ours -> the source's
    size: int | None = None  # gym: problems to generate
    seed: int = 0  # gym: generator seed; text datasets: shuffle seed

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ShearsError(
                f"data source {self.source!r} is not known; allowed: {', '.join(SOURCES)}"
            )
        if self.size is not None and self.size < 1:
            raise ShearsError(f"size must be >= 1, got {self.size}")

    @classmethod
    def parse(cls, spec: str, **settings) -> DataSpec:
        """``gym:<generator>``; a ``.json`` / ``.jsonl`` (or any existing) file; else a
        ``datasets`` name or folder (``hf:`` forces it). ``settings``: the other fields."""
        if spec.startswith("gym:"):
            return cls("gym", spec[4:], **settings)
        path = Path(spec)
        if path.suffix in JSON_SUFFIXES or path.is_file():
            return cls("json", spec, **settings)
        return cls("hf", spec[3:] if spec.startswith("hf:") else spec, **settings)

    @classmethod
    def text(
        cls,
        spec: str,
        text_field: str = "text",
        config: str | None = None,
        split: str = "train",
        seed: int = 0,
    ) -> DataSpec:
        """A text source (``--calibration``, ``--ppl-source``, ``ppl:`` tasks; see
        :func:`source_kind`) whose text is the field or column ``text_field``."""
        source = {"default": "text", "text": "text", "json": "json"}.get(source_kind(spec), "hf")
        return cls(source, spec, config, split, {"text": text_field}, seed=seed)

    @property
    def text_field(self) -> str:
        """The field (JSON) or column (datasets) that holds a text source's text."""
        return self.fields.get("text", "text")


def source_kind(source: str) -> str:
    """What a text source names: ``default``, ``text`` (a text file), ``json`` (a JSON/JSONL file),
    ``dataset`` (a folder or a `datasets` name) or ``missing`` (a path that does not exist); no I/O
    beyond ``Path.exists``."""
    if source == DEFAULT_TEXT:
        return "default"
    p = Path(source).expanduser()
    if p.is_file():
        return "json" if p.suffix in JSON_SUFFIXES else "text"
    if p.is_dir():
        return "dataset"
    if source.startswith((".", "/", "~")) or p.suffix in _PATH_SUFFIXES:
        return "missing"
    return "dataset"


def validate_source(source: str, what: str = "--calibration") -> None:
    """Cheap checks of a text source before any model is loaded: the file exists and is text,
    reasoning-gym is installed for ``default``. ``what`` names the flag in errors."""
    kind = source_kind(source)
    if kind == "missing":
        raise ShearsError(
            f"{what} {source!r} does not exist (expected 'default', a text/JSON/JSONL file, "
            "a datasets folder or a datasets name)"
        )
    if kind in ("text", "json"):  # binary or non-UTF-8 content fails here, before any model
        check_text_file(Path(source).expanduser(), what)
    if kind == "default":
        import importlib.util

        if importlib.util.find_spec("reasoning_gym") is None:
            raise ShearsError(
                f"{what} 'default' generates text with reasoning-gym, which is not installed; "
                "pip install 'reasoning-gym==0.1.25' or pass a text file"
            )
