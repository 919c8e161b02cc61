"""The fuzz table of bad or hostile inputs for every ``shears`` command (issue 12).

Shared by ``tests/cli/test_bad_inputs.py`` (one pytest case per row) and ``bench/bad_inputs.py``
(counts by outcome). Not a test module (no ``test_`` prefix).

Every case runs ``shears.cli.main(argv)`` in-process, in a fresh copy of a small "world" (tiny
models, a real prune / train / search / eval / export output each, data files, a user folder with
notes, a fake home folder), with the current folder at the copy's root. The expected outcome of
every row is the same: exit code 2, one line on stderr (the error) naming the bad value or flag,
no traceback, nothing new on disk and every file as it was (hashed before and after).

Outcomes: ``clear`` (as expected), ``traceback`` (an exception escaped ``main`` or a traceback was
printed), ``silent`` (exit 0: the bad input was accepted), ``data_loss`` (a file that was there
before changed or vanished), ``other`` (wrong exit code, several stderr lines, a message that does
not name the value, or new files / folders left behind).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import random
import re
import shutil
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
if str(TESTS) not in sys.path:  # conftest.tiny_model when imported outside pytest (the bench)
    sys.path.insert(0, str(TESTS))

COMMANDS = ("prune", "train", "search", "eval", "export", "generate", "deploy", "run")
HAS_DEPLOY = all(importlib.util.find_spec(m) for m in ("openvino", "nncf"))  # the deploy extra
OUTCOMES = ("clear", "traceback", "silent", "data_loss", "other")
GPT2_POSITIONS = 64

# Not counted as error lines (but reported as noise): shears log lines below WARNING and
# progress bars (tqdm: "Loading weights: 100%|####| 21/21 [00:00<00:00, 17665.54it/s]").
_INFO_LINE = re.compile(r"^\d\d:\d\d:\d\d (INFO|DEBUG) |\d+%\||\d+/\d+ \[\d+:\d+")
_WARNING_LINE = re.compile(r"^\d\d:\d\d:\d\d WARNING ")
_LOG_PREFIX = re.compile(r"^\d\d:\d\d:\d\d [A-Z]+ [\w.]+: ")


# ---------------------------------------------------------------------------- the world


def _tokenizer():
    """A tiny byte-level BPE tokenizer trained in-process on the prompts it will see (eos = pad =
    ``<eos>``), so that an Alpaca prompt takes about 40 tokens: it fits GPT-2's 64 positions."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from shears.data.prompts import format_prompt

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    rows = TRAIN_ROWS + MATH_ROWS
    text = [format_prompt(r["instruction"]) + r.get("output", "") for r in rows] + [CALIB_TEXT]
    tok.train_from_iterator(text * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")


CALIB_TEXT = " ".join(
    f"Sentence {i}: the {w} number is {i * 7 % 13}, and below is an instruction that describes a task."
    for i, w in enumerate(["first", "second", "odd", "even", "last"] * 20)
)

TRAIN_ROWS = [
    {
        "instruction": f"Add {i} and {i + 3}.",
        "input": "",
        "output": f"The answer is {2 * i + 3}.",
        "answer": str(2 * i + 3),
    }
    for i in range(12)
]

MATH_ROWS = [
    {"instruction": "What is 2 plus 3?", "input": "", "output": "5", "answer": "5"},
    {"instruction": "Compute 7 minus 9.", "answer": "-2"},
    {"instruction": "Compute 4 times 2.", "answer": "8"},
]


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)


def _binary(n: int = 4096, seed: int = 0) -> bytes:
    """Random bytes with NULs and invalid UTF-8 (a binary file given as text)."""
    return b"\x00\xff\xfe" + random.Random(seed).randbytes(n)


def _shears(root: Path, argv: list[str]) -> None:
    """Run a real ``shears`` command while building the world; raise with its stderr if it fails."""
    res = run_argv(argv, root)
    if res.rc != 0 or res.exc is not None:
        raise RuntimeError(
            f"building the bad-input world: `shears {' '.join(argv)}` failed (rc {res.rc}):\n"
            f"{res.stderr}\n{res.exc or ''}"
        )


def build_world(root: Path) -> Path:
    """Write the template world into ``root`` (once per module; cases copy it)."""
    from conftest import tiny_model

    root.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer()
    # user files: a folder that is not a shears output, a fake home, a work folder for `..`
    _write(root / "notes.txt", "my notes: do not lose me\n")
    _write(root / "userdir" / "notes.txt", "the user's own notes\n")
    _write(root / "userdir" / "sub" / "draft.md", "# a draft\n")
    _write(root / "home" / "notes.txt", "home notes\n")
    _write(root / "home" / ".profile", "export X=1\n")
    _write(root / "work" / "todo.txt", "1. fix shears\n")
    # models: a tiny LLaMA (1024 positions) and a tiny GPT-2 with 64 learned positions
    tiny_model("llama", tokenizer=tok, max_positions=1024).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    tiny_model("gpt2", tokenizer=tok, max_positions=GPT2_POSITIONS).save_pretrained(root / "gpt2")
    tok.save_pretrained(root / "gpt2")
    _write(root / "garbage.gguf", b"GGUF" + _binary(2048, 1))
    # data
    _write(root / "calib.txt", CALIB_TEXT)
    _write(root / "calib.json", json.dumps([{"text": CALIB_TEXT}]))
    _write(root / "binary.txt", _binary())
    _write(root / "binary.json", _binary(seed=2))
    _write(root / "binary.yaml", _binary(seed=3))
    _write(root / "latin1.txt", ("Café naïve déjà vu, über große Straße. " * 200).encode("latin-1"))
    rows = [{"instruction": "Résumé du café: 2 + 2 ?", "output": "Réponse: 4", "answer": "4"}] * 4
    _write(root / "latin1.json", json.dumps(rows, ensure_ascii=False).encode("latin-1"))
    _write(root / "empty.txt", "")
    _write(root / "empty.json", "")
    _write(root / "emptylist.json", "[]")
    _write(root / "dict.json", json.dumps({"a": 1}))
    _write(root / "nofields.json", json.dumps([{"question": "2 + 2?", "reply": "4"}] * 4))
    _write(root / "bad.json", '{"not json": [1, 2')
    _write(root / "list.json", "[1, 2, 3]")
    _write(root / "train.json", json.dumps(TRAIN_ROWS))
    long_row = {
        "instruction": "Add these numbers: " + " + ".join(map(str, range(300))),
        "output": "44850",
    }
    _write(root / "long.json", json.dumps([long_row, *TRAIN_ROWS[:1]]))
    _write(root / "math.json", json.dumps(MATH_ROWS))
    # config files
    _write(root / "bad.yaml", "key: [unclosed\n  - : :\n")
    _write(root / "list.yaml", "- a\n- b\n")
    _write(root / "unknown.yaml", "bogus_key: 1\n")
    # real outputs of every command (each holds its own marker / results file)
    _shears(root, ["prune", "--model", "base", "--method", "magnitude", "--output-dir", "pruned",
                   "--no-plot", "--device", "cpu"])  # fmt: skip
    _shears(root, ["train", "--model", "pruned", "--data", "train.json", "--train-size", "6",
                   "--output-dir", "adapter", "--max-steps", "1", "--batch-size", "2",
                   "--grad-accum", "1", "--save-steps", "1", "--widths", "8,6,4", "--alpha", "16",
                   "--cutoff-len", "60", "--device", "cpu"])  # fmt: skip
    _shears(root, ["train", "--model", "gpt2", "--data", "train.json", "--train-size", "6",
                   "--output-dir", "gpt2_adapter", "--targets", "c_attn,c_fc", "--groups", "",
                   "--max-steps", "1", "--batch-size", "2", "--grad-accum", "1",
                   "--save-steps", "1", "--widths", "4,2", "--alpha", "8", "--cutoff-len", "60",
                   "--device", "cpu"])  # fmt: skip
    _shears(root, ["search", "--adapter", "adapter", "--model", "pruned", "--algorithm",
                   "heuristic", "--val-size", "2", "--batch-size", "2", "--output-dir",
                   "search_out", "--no-plots", "--device", "cpu"])  # fmt: skip
    _shears(root, ["eval", "--model", "base", "--tasks", "math:math.json", "--limit", "2",
                   "--max-new-tokens", "2", "--batch-size", "2", "--output-dir", "eval_out",
                   "--no-progress", "--device", "cpu"])  # fmt: skip
    _shears(root, ["export", "--adapter", "adapter", "--model", "pruned", "--output-dir",
                   "export_out", "--no-verify"])  # fmt: skip
    _shears(root, [*GENERATE_BASE, "--output-dir", "generate_out"])
    if HAS_DEPLOY:
        _shears(root, [*DEPLOY_BASE, "--output-dir", "deploy_out"])
    # sub-adapter configs derived from the real adapter
    best = json.loads((root / "search_out" / "search_results.json").read_text())["best"]["config"]
    _write(root / "good_sub.json", json.dumps(best))
    first = sorted(best)[0]
    _write(root / "sub_rank.json", json.dumps({**best, first: 5}))
    _write(root / "sub_unknown.json", json.dumps({"nope": 8}))
    _write(root / "sub_nobest.json", json.dumps({"best": None, "history": []}))
    return root


def copy_world(template: Path, dest: Path) -> Path:
    """A fresh copy of the world for one case (cases may break files in their copy)."""
    shutil.copytree(template, dest, symlinks=True, dirs_exist_ok=True)
    return dest


# ---------------------------------------------------------------------------- running


@dataclass
class RunResult:
    rc: int | None
    stdout: str
    stderr: str
    exc: str | None  # "Type: message" of an exception that escaped main (with its traceback)


@contextlib.contextmanager
def _fd_capture(fd: int) -> Iterator[Callable[[], str]]:
    """Redirect file descriptor ``fd`` into a temp file (outside the case folder)."""
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        holder = {"text": ""}
        try:
            yield lambda: holder["text"]
        finally:
            with contextlib.suppress(Exception):
                sys.__stderr__.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            holder["text"] = tmp.read().decode("utf-8", "replace")


@contextlib.contextmanager
def _environment(cwd: Path, env: dict[str, str]) -> Iterator[None]:
    old_cwd = os.getcwd()
    old_env = {k: os.environ.get(k) for k in env}
    os.chdir(cwd)
    os.environ.update(env)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_argv(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> RunResult:
    """``shears.cli.main(argv)`` in-process with ``cwd`` as the current folder; stdout and stderr
    captured at the Python and the file-descriptor level; Python warnings recorded, not printed."""
    from shears.cli import main

    out, err = io.StringIO(), io.StringIO()
    rc: int | None = None
    exc: str | None = None
    with (
        _environment(cwd, env or {}),
        _fd_capture(2) as fd_err,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(record=True),
    ):
        warnings.simplefilter("always")
        try:
            rc = main(list(argv))
        except SystemExit as e:  # argparse
            rc = e.code if isinstance(e.code, int) else 2
        except BaseException as e:  # noqa: BLE001 - an escaped exception is the finding
            exc = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    return RunResult(rc, out.getvalue(), err.getvalue() + fd_err(), exc)


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (hidden ones too): relative path -> sha256 of a file, ``dir/``
    for a folder, ``-> target`` for a link."""
    snap: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        for name in dirnames:
            p = d / name
            snap[str(p.relative_to(root))] = f"-> {os.readlink(p)}" if p.is_symlink() else "dir/"
        for name in filenames:
            p = d / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                snap[rel] = f"-> {os.readlink(p)}"
            else:
                snap[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return snap


# ---------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    """One bad input. ``argv`` may use ``{root}`` and ``{home}`` (absolute paths of the case's
    world and of its fake home folder); ``expect``: the error line names at least one of these
    (case-insensitive, placeholders filled); ``forbid``: it names none of these; ``warns``: one
    WARNING line is expected before the error (e.g. search on another base than the adapter's)."""

    id: str
    argv: tuple[str, ...]
    expect: tuple[str, ...]
    cwd: str = "."
    home: bool = False  # HOME -> {root}/home
    prep: Callable[[Path], None] | None = None
    forbid: tuple[str, ...] = ()
    warns: bool = False
    note: str = ""

    @property
    def command(self) -> str:
        return self.argv[0]


@dataclass
class Outcome:
    case: Case
    outcome: str
    reason: str
    rc: int | None
    error_line: str | None
    stderr: str
    exc: str | None
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    info_lines: int = 0


def _fill(text: str, root: Path) -> str:
    return text.replace("{root}", str(root)).replace("{home}", str(root / "home"))


def classify(case: Case, root: Path, res: RunResult, before: dict, after: dict) -> Outcome:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    info = [ln for ln in lines if _INFO_LINE.search(ln)]
    errors = [ln for ln in lines if not _INFO_LINE.search(ln)]
    if case.warns:  # one expected warning (by design) may come before the error
        warned = [ln for ln in errors if _WARNING_LINE.match(ln)][:1]
        errors = [ln for ln in errors if ln not in warned]
        info += warned
    new = sorted(set(after) - set(before))
    vanished = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    line = _LOG_PREFIX.sub("", errors[0]) if len(errors) == 1 else None
    o = Outcome(case, "clear", "", res.rc, line, res.stderr, res.exc, new, changed, vanished)
    o.info_lines = len(info)

    def short(paths: list[str]) -> str:
        return ", ".join(paths[:4]) + (f" (+{len(paths) - 4})" if len(paths) > 4 else "")

    if changed or vanished:
        o.outcome = "data_loss"
        o.reason = "; ".join(
            s
            for s in (
                f"changed: {short(changed)}" if changed else "",
                f"vanished: {short(vanished)}" if vanished else "",
            )
            if s
        )
    elif res.exc is not None or any("Traceback (most recent call last)" in ln for ln in lines):
        o.outcome = "traceback"
        o.reason = (res.exc or "traceback printed on stderr").splitlines()[0][:200]
    elif res.rc == 0:
        o.outcome = "silent"
        o.reason = "exit 0" + (f"; wrote {short(new)}" if new else "")
    elif res.rc != 2:
        o.outcome = "other"
        o.reason = f"exit {res.rc}"
    elif len(errors) != 1:
        o.outcome = "other"
        o.reason = f"{len(errors)} stderr lines: " + " | ".join(e[:100] for e in errors[:3])
    else:
        low = line.lower()
        wanted = [_fill(e, root).lower() for e in case.expect]
        banned = [_fill(f, root).lower() for f in case.forbid]
        if not any(w in low for w in wanted):
            o.outcome = "other"
            o.reason = f"message names none of {case.expect}: {line[:160]}"
        elif any(b in low for b in banned):
            o.outcome = "other"
            o.reason = f"message says {case.forbid}: {line[:160]}"
        elif new:
            o.outcome = "other"
            o.reason = f"left behind: {short(new)}"
    return o


def run_case(case: Case, template: Path, case_dir: Path) -> Outcome:
    """Copy the world to ``case_dir/w``, apply ``case.prep``, run the command there, classify.

    Everything under ``case_dir`` is hashed before and after (so hidden siblings of the world
    folder itself count as written too)."""
    root = copy_world(template, case_dir / "w")
    if case.prep is not None:
        case.prep(root)
    before = snapshot(case_dir)
    argv = [_fill(a, root) for a in case.argv]
    env = {"HOME": str(root / "home")} if case.home else {}
    res = run_argv(argv, root / case.cwd, env)
    return classify(case, root, res, before, snapshot(case_dir))


# ---------------------------------------------------------------------------- case builders


def _copy(src: str, dst: str) -> Callable[[Path], None]:
    def prep(root: Path) -> None:
        s, d = root / src, root / dst
        if s.is_dir():
            shutil.copytree(s, d)
        else:
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, d)

    return prep


def _put(rel: str, data: str | bytes) -> Callable[[Path], None]:
    return lambda root: _write(root / rel, data)


def _rm(rel: str) -> Callable[[Path], None]:
    return lambda root: (root / rel).unlink()


PRUNE_BASE = ("prune", "--model", "base", "--output-dir", "out", "--calibration", "calib.txt",
              "--nsamples", "2", "--seqlen", "16", "--no-plot", "--device", "cpu")  # fmt: skip
TRAIN_BASE = ("train", "--model", "pruned", "--data", "train.json", "--output-dir", "out",
              "--max-steps", "1", "--batch-size", "2", "--grad-accum", "1", "--save-steps", "1",
              "--widths", "8,4", "--alpha", "16", "--cutoff-len", "60", "--device", "cpu")  # fmt: skip
GPT2_SPACE = ("--targets", "c_attn,c_fc", "--groups", "")
SEARCH_BASE = ("search", "--adapter", "adapter", "--model", "pruned", "--output-dir", "out",
               "--algorithm", "heuristic", "--val-size", "2", "--batch-size", "2", "--no-plots",
               "--device", "cpu")  # fmt: skip
EVAL_BASE = ("eval", "--model", "base", "--tasks", "math:math.json", "--limit", "2",
             "--max-new-tokens", "2", "--batch-size", "2", "--output-dir", "out", "--no-progress",
             "--device", "cpu")  # fmt: skip
EXPORT_BASE = ("export", "--adapter", "adapter", "--model", "pruned", "--output-dir", "out",
               "--no-verify")  # fmt: skip
GENERATE_BASE = ("generate", "--model", "pruned", "--adapter", "adapter", "--prompt",
                 "What is 2 plus 3?", "--max-new-tokens", "2", "--device", "cpu")  # fmt: skip
DEPLOY_BASE = ("deploy", "--model", "pruned", "--adapter", "adapter", "--sub-adapter", "max",
               "--precision", "int8-weights", "--no-verify", "--output-dir", "out")  # fmt: skip
RUN_BASE = ("run_dir=out", "model=base", "task=train.json", "eval_tasks=[math:math.json]",
            "evaluate_dense=false", "prune.calibration=calib.txt", "prune.nsamples=2",
            "prune.seqlen=16", "prune.plot=false", "train.train_size=6", "train.max_steps=1",
            "train.batch_size=2", "train.grad_accum=1", "train.save_steps=1",
            "train.cutoff_len=60", "train.space.widths=[4,2]", "search.budget=2",
            "search.max_turns=1", "search.val_size=2", "search.batch_size=2",
            "search.plots=false", "eval.limit=2", "eval.max_new_tokens=2", "eval.batch_size=2",
            "eval.progress=false", "export.verify=false")  # fmt: skip
RUN_GPT2 = ("model=gpt2", "train.adapter.targets=[c_attn,c_fc]", "train.space.groups=[]")


def _dotdot(argv: tuple[str, ...]) -> tuple[str, ...]:
    """Base arguments rewritten for a case run from ``work/`` (paths one folder up)."""
    local = {"base", "gpt2", "pruned", "adapter", "calib.txt", "train.json", "math.json", "out"}
    out = []
    for a in argv:
        if a in local:
            a = f"../{a}"
        elif a.startswith("math:"):
            a = f"math:../{a[5:]}"
        elif "=" in a and not a.startswith("-"):
            k, v = a.split("=", 1)
            if v in local:
                a = f"{k}=../{v}"
            elif v.startswith("[math:"):
                a = f"{k}=[math:../{v[6:]}"
            elif v.startswith("calib") or v.startswith("train."):
                a = f"{k}=../{v}"
        out.append(a)
    return tuple(out)


def _out_cases(cmd: str, base: tuple[str, ...], flag: str) -> list[Case]:
    """The output-folder cases every command shares (issue items 1, 2, 5 and 7)."""

    def out(value: str) -> tuple[str, ...]:
        return (f"{flag}={value}",) if cmd == "run" else (flag, value)

    ow = "--overwrite"
    where = (flag, "--overwrite", "output", "current folder")
    # From work/, '../pruned' is not the base path the adapter recorded as given ('pruned'), and
    # its recorded absolute path is the template's (the world is a copy): search and export warn.
    copy_warns = cmd in ("search", "export", "deploy")
    return [
        Case(f"{cmd}-overwrite-dot", (*base, *out("."), ow), ("'.'", "{root}", *where),
             note="issue 1: --overwrite on the current folder"),
        Case(f"{cmd}-overwrite-dotdot", (*_dotdot(base), *out(".."), ow), ("..", "{root}", *where),
             cwd="work", warns=copy_warns, note="issue 1: --overwrite on the parent folder"),
        Case(f"{cmd}-overwrite-home", (*base, *out("{home}"), ow), ("{home}", "home"), home=True,
             note="issue 1: --overwrite on the home folder"),
        Case(f"{cmd}-overwrite-user-folder", (*base, *out("userdir"), ow), ("userdir",),
             forbid=("pass --overwrite",), note="issue 1: a non-empty folder shears did not write"),
        Case(f"{cmd}-user-folder-no-overwrite", (*base, *out("userdir")), ("userdir",),
             forbid=("pass --overwrite",) if cmd == "run" else (),
             note="an occupied folder without --overwrite"),
        Case(f"{cmd}-output-under-file", (*base, *out("notes.txt/out")), ("notes.txt",),
             note="issue 5: an output folder under a file"),
        Case(f"{cmd}-output-is-file-overwrite", (*base, *out("notes.txt"), ow), ("notes.txt",),
             note="an output 'folder' that is a user file"),
    ]  # fmt: skip


def _config_cases(cmd: str, base: tuple[str, ...], good_key: str, bad_value: str) -> list[Case]:
    """``--config`` files: missing, invalid YAML, not a mapping, binary, unknown key, wrong type."""
    return [
        Case(f"{cmd}-config-missing", (*base, "--config", "missing.yaml"), ("missing.yaml",)),
        Case(f"{cmd}-config-invalid-yaml", (*base, "--config", "bad.yaml"), ("bad.yaml",)),
        Case(f"{cmd}-config-not-mapping", (*base, "--config", "list.yaml"), ("list.yaml",)),
        Case(f"{cmd}-config-binary", (*base, "--config", "binary.yaml"), ("binary.yaml",)),
        Case(f"{cmd}-config-unknown-key", (*base, "--config", "unknown.yaml"), ("bogus_key",)),
        Case(f"{cmd}-config-wrong-type", (*base, "--config", "cfg.yaml"), (good_key,),
             prep=_put("cfg.yaml", f"{good_key}: {bad_value}\n")),
    ]  # fmt: skip


def prune_cases() -> list[Case]:
    b = PRUNE_BASE
    cases = _out_cases("prune", b, "--output-dir")
    cases += [
        Case("prune-output-is-model", (*b, "--output-dir", "base", "--overwrite"), ("base",),
             note="issue 2: the output folder is the input model"),
        Case("prune-output-is-model-own-output", (*b, "--model", "pruned", "--output-dir",
             "pruned", "--overwrite"), ("pruned",),
             note="re-pruning a prune output in place: marked, but it is the input"),
        Case("prune-output-inside-model", (*b, "--output-dir", "base/pruned"), ("base",),
             note="outputs must not lie inside an input"),
        Case("prune-output-holds-calibration", (*b, "--calibration", "pruned/calib.txt",
             "--output-dir", "pruned", "--overwrite"), ("pruned",),
             prep=_copy("calib.txt", "pruned/calib.txt"),
             note="a prune output that holds this run's calibration file"),
        Case("prune-seqlen-above-positions", (*b, "--model", "gpt2", "--seqlen", "100"),
             ("seqlen",), note="issue 3: GPT-2 with 64 positions"),
        Case("prune-ppl-seqlen-above-positions", (*b, "--model", "gpt2", "--eval-ppl",
             "--ppl-source", "calib.txt", "--ppl-seqlen", "100"), ("ppl-seqlen", "ppl_seqlen"),
             note="issue 3"),
        Case("prune-garbage-gguf", (*b, "--model", "garbage.gguf"), ("garbage.gguf",),
             note="issue 5"),
        Case("prune-gguf-file-missing", (*b, "--gguf-file", "x.gguf"), ("x.gguf",)),
        Case("prune-model-missing", (*b, "--model", "nosuchdir"), ("nosuchdir",)),
        Case("prune-model-not-hf-folder", (*b, "--model", "userdir"), ("userdir",)),
        Case("prune-model-plain-file", (*b, "--model", "notes.txt"), ("notes.txt",)),
        Case("prune-targets-bad-regex", (*b, "--targets", "re:["), ("re:[",), note="issue 5"),
        Case("prune-targets-match-nothing", (*b, "--targets", "nope_proj"), ("nope_proj",)),
        Case("prune-ignore-everything", (*b, "--ignore", "re:.*"), ("re:.*", "ignore")),
        Case("prune-calibration-binary", (*b, "--calibration", "binary.txt"), ("binary.txt",),
             note="issue 6: binary bytes as calibration text"),
        Case("prune-calibration-not-utf8", (*b, "--calibration", "latin1.txt"), ("latin1.txt",)),
        Case("prune-calibration-missing", (*b, "--calibration", "missing.txt"), ("missing.txt",)),
        Case("prune-calibration-empty", (*b, "--calibration", "empty.txt"), ("empty.txt",
             "calibration")),
        Case("prune-calibration-wrong-field", (*b, "--calibration", "calib.json", "--text-field",
             "body"), ("body",)),
        Case("prune-calibration-too-short", (*b, "--nsamples", "500", "--seqlen", "64"),
             ("nsamples", "500")),
        Case("prune-pattern-and-sparsity", (*b, "--pattern", "2:4", "--sparsity", "0.3"),
             ("sparsity", "2:4"), note="issue 6: --pattern 2:4 --sparsity 0.3 ran at 0.5"),
        Case("prune-pattern-not-divisible", (*b, "--pattern", "2:3"), ("2:3",)),
        Case("prune-pattern-garbage", (*b, "--pattern", "half"), ("half",)),
        Case("prune-pattern-n-ge-m", (*b, "--pattern", "4:2"), ("4:2",)),
        Case("prune-sparsity-one", (*b, "--sparsity", "1"), ("sparsity",)),
        Case("prune-sparsity-negative", (*b, "--sparsity", "-0.1"), ("sparsity",)),
        Case("prune-sparsity-not-number", (*b, "--sparsity", "lots"), ("sparsity",)),
        Case("prune-sparsity-nan", (*b, "--sparsity", "nan"), ("sparsity",)),
        Case("prune-nsamples-zero", (*b, "--nsamples", "0"), ("nsamples",)),
        Case("prune-seqlen-negative", (*b, "--seqlen", "-5"), ("seqlen",)),
        Case("prune-batch-size-float", (*b, "--batch-size", "2.5"), ("batch",)),
        Case("prune-method-unknown", (*b, "--method", "random"), ("random",)),
        Case("prune-device-unknown", (*b, "--device", "gpu9"), ("gpu9",)),
        Case("prune-dtype-unknown", (*b, "--dtype", "float7"), ("float7",)),
    ]  # fmt: skip
    return cases + _config_cases("prune", b, "sparsity", "[0.5]")


def train_cases() -> list[Case]:
    b = TRAIN_BASE
    cases = _out_cases("train", b, "--output-dir")
    cases += [
        Case("train-output-is-model", (*b, "--model", "mybase", "--output-dir", "mybase",
             "--overwrite"), ("mybase",), prep=_copy("pruned", "mybase"),
             note="issue 2: cp -r prune mybase; train --model mybase --output-dir mybase"),
        Case("train-output-inside-model", (*b, "--output-dir", "pruned/adapter"), ("pruned",)),
        Case("train-output-holds-data", (*b, "--data", "adapter/train.json", "--output-dir",
             "adapter", "--overwrite"), ("adapter",), prep=_copy("train.json", "adapter/train.json"),
             note="a train output that holds this run's data file"),
        Case("train-output-holds-model", (*b, "--model", "adapter/base", "--output-dir", "adapter",
             "--overwrite"), ("adapter",), prep=_copy("pruned", "adapter/base")),
        Case("train-resume-user-folder", (*b, "--output-dir", "userdir", "--resume"),
             ("userdir",), note="--resume into a folder that holds no training run"),
        Case("train-cutoff-above-positions-long", (*b, "--model", "gpt2", *GPT2_SPACE,
             "--cutoff-len", "100000", "--data", "long.json"), ("cutoff",),
             note="issue 3: IndexError on a long example"),
        Case("train-cutoff-above-positions", (*b, "--model", "gpt2", *GPT2_SPACE,
             "--cutoff-len", "100"), ("cutoff",), note="issue 3"),
        Case("train-garbage-gguf", (*b, "--model", "garbage.gguf"), ("garbage.gguf",),
             note="issue 5"),
        Case("train-model-missing", (*b, "--model", "nosuchdir"), ("nosuchdir",)),
        Case("train-targets-bad-regex", (*b, "--targets", "re:[", "--groups", ""), ("re:[",),
             note="issue 5"),
        Case("train-targets-match-nothing", (*b, "--targets", "nope_proj", "--groups", ""),
             ("nope_proj",)),
        Case("train-groups-typo", (*b, "--groups", "q_proj,k_prj,v_proj;up_proj;down_proj"),
             ("k_prj",), note="issue 6: a --groups pattern that matches nothing was dropped"),
        Case("train-groups-no-match", (*b, "--groups", "q_proj;gate_projj"), ("gate_projj",)),
        Case("train-data-not-utf8", (*b, "--data", "latin1.json"), ("latin1.json",),
             note="issue 5"),
        Case("train-data-binary", (*b, "--data", "binary.json"), ("binary.json",)),
        Case("train-data-missing", (*b, "--data", "missing.json"), ("missing.json",)),
        Case("train-data-empty-file", (*b, "--data", "empty.json"), ("empty.json",)),
        Case("train-data-empty-list", (*b, "--data", "emptylist.json"), ("emptylist.json",)),
        Case("train-data-not-a-list", (*b, "--data", "dict.json"), ("dict.json",)),
        Case("train-data-list-of-numbers", (*b, "--data", "list.json"), ("list.json",)),
        Case("train-data-wrong-fields", (*b, "--data", "nofields.json"), ("nofields.json",)),
        Case("train-data-invalid-json", (*b, "--data", "bad.json"), ("bad.json",)),
        Case("train-data-jsonl-bad-line", (*b, "--data", "bad.jsonl"), ("bad.jsonl",),
             prep=_put("bad.jsonl", json.dumps(TRAIN_ROWS[0]) + "\n{broken\n")),
        Case("train-widths-ascending", (*b, "--widths", "4,8"), ("widths",)),
        Case("train-widths-empty", (*b, "--widths", ""), ("widths",)),
        Case("train-widths-not-int", (*b, "--widths", "8,x"), ("widths",)),
        Case("train-widths-zero", (*b, "--widths", "8,0"), ("widths", "0")),
        Case("train-widths-above-r-max", (*b, "--widths", "8,4", "--r-max", "4"), ("r_max",
             "r-max")),
        Case("train-lr-zero", (*b, "--lr", "0"), ("lr",)),
        Case("train-lr-not-number", (*b, "--lr", "fast"), ("lr",)),
        Case("train-batch-size-zero", (*b, "--batch-size", "0"), ("batch",)),
        Case("train-max-steps-negative", (*b, "--max-steps", "-1"), ("max_steps", "max-steps")),
        Case("train-epochs-zero", (*b, "--max-steps", "0", "--epochs", "0"), ("epochs",)),
        Case("train-dropout-above-one", (*b, "--dropout", "1.5"), ("dropout",)),
        Case("train-alpha-negative", (*b, "--alpha", "-16"), ("alpha",)),
        Case("train-prompt-style-unknown", (*b, "--prompt-style", "vicuna"), ("vicuna",)),
        Case("train-precision-unknown", (*b, "--precision", "fp8"), ("fp8",)),
        Case("train-scheduler-unknown", (*b, "--lr-scheduler", "zigzag"), ("zigzag",)),
        Case("train-data-fields-garbage", (*b, "--data-fields", "instruction"), ("data-fields",
             "data_fields", "instruction")),
        Case("train-overwrite-and-resume", (*b, "--overwrite", "--resume"), ("resume",)),
        Case("train-space-not-mapping", (*b, "--config", "cfg.yaml"), ("space",),
             prep=_put("cfg.yaml", "space: 5\n")),
        Case("train-space-config-unknown-key", (*b, "--space-config", "space.yaml"),
             ("widthz",), prep=_put("space.yaml", "widthz: [8]\n")),
        Case("train-device-unknown", (*b, "--device", "gpu9"), ("gpu9",)),
        Case("train-nls-max-prob-above-one", (*b, "--nls-max-prob", "1.5"), ("nls-max-prob",
             "1.5")),
    ]  # fmt: skip
    return cases + _config_cases("train", b, "lr", "[1, 2]")


def _corrupt(rel: str, data: str | bytes = '{"r_max": 8, "space_con') -> Callable[[Path], None]:
    return _put(rel, data)


def search_cases() -> list[Case]:
    b = SEARCH_BASE
    hc = ("--algorithm", "hill-climbing", "--budget", "2")
    cases = _out_cases("search", b, "--output-dir")
    cases += [
        Case("search-output-is-adapter", (*b, "--output-dir", "adapter", "--overwrite"),
             ("adapter",), note="the output folder is the input adapter"),
        Case("search-output-inside-adapter", (*b, "--output-dir", "adapter/search"),
             ("adapter",)),
        Case("search-output-is-model", (*b, "--output-dir", "pruned", "--overwrite"),
             ("pruned",)),
        Case("search-output-holds-start", (*b, *hc, "--start", "search_out/start.json",
             "--output-dir", "search_out", "--overwrite"), ("search_out",),
             prep=_copy("good_sub.json", "search_out/start.json"),
             note="a search output that holds this run's --start file"),
        Case("search-resume-user-folder", (*b, "--output-dir", "userdir", "--resume"),
             ("userdir",), note="--resume into a folder that holds no search"),
        Case("search-start-garbage-json", (*b, *hc, "--start", "bad.json"), ("bad.json",),
             note="issue 5"),
        Case("search-start-not-mapping", (*b, *hc, "--start", "list.json"), ("list.json",)),
        Case("search-start-unknown-group", (*b, *hc, "--start", "sub_unknown.json"), ("nope",)),
        Case("search-start-bad-rank", (*b, *hc, "--start", "sub_rank.json"), ("5",)),
        Case("search-start-missing", (*b, *hc, "--start", "missing.json"), ("missing.json",)),
        Case("search-start-binary", (*b, *hc, "--start", "binary.json"), ("binary.json",)),
        Case("search-space-garbage-json", (*b, "--space", "bad.json"), ("bad.json",),
             note="issue 5"),
        Case("search-space-wrong-shape", (*b, "--space", "dict.json"), ("dict.json",)),
        Case("search-space-missing", (*b, "--space", "missing.json"), ("missing.json",)),
        Case("search-adapter-missing", (*b, "--adapter", "nosuchdir"), ("nosuchdir",)),
        Case("search-adapter-not-adapter", (*b, "--adapter", "userdir"), ("userdir",)),
        Case("search-adapter-corrupt-meta", b, ("shears_adapter.json",),
             prep=_corrupt("adapter/shears_adapter.json"), note="issue 5"),
        Case("search-adapter-corrupt-space", b, ("search_space.json",),
             prep=_corrupt("adapter/search_space.json")),
        Case("search-adapter-garbage-weights", b, ("adapter_model.safetensors",),
             prep=_corrupt("adapter/adapter_model.safetensors", _binary(512))),
        Case("search-adapter-corrupt-train-config", b, ("train_config.json",),
             prep=_corrupt("adapter/train_config.json")),
        Case("search-model-garbage-gguf", (*b, "--model", "garbage.gguf"), ("garbage.gguf",),
             warns=True, note="warns: not the adapter's base (issue 6), then the error"),
        Case("search-model-does-not-fit", (*b, "--model", "gpt2"), ("gpt2", "fit"), warns=True),
        Case("search-cutoff-above-positions", (*b, "--adapter", "gpt2_adapter", "--model", "gpt2",
             "--data", "long.json", "--cutoff-len", "1000"), ("cutoff",), note="issue 3"),
        Case("search-data-not-utf8", (*b, "--data", "latin1.json"), ("latin1.json",)),
        Case("search-data-binary", (*b, "--data", "binary.json"), ("binary.json",)),
        Case("search-data-empty-list", (*b, "--data", "emptylist.json"), ("emptylist.json",)),
        Case("search-data-wrong-fields", (*b, "--data", "nofields.json"), ("nofields.json",)),
        Case("search-data-split-test", (*b, "--data-split", "test"), ("test",)),
        Case("search-algorithm-unknown", (*b, "--algorithm", "annealing"), ("annealing",)),
        Case("search-objective-unknown", (*b, "--objective", "bleu"), ("bleu",)),
        Case("search-budget-zero", (*b, "--budget", "0"), ("budget",)),
        Case("search-budget-not-int", (*b, "--budget", "lots"), ("budget",)),
        Case("search-val-size-zero", (*b, "--val-size", "0"), ("val_size", "val-size")),
        Case("search-population-one", (*b, "--algorithm", "evolutionary", "--population", "1"),
             ("population",)),
        Case("search-mutation-prob-two", (*b, "--mutation-prob", "2"), ("mutation",)),
        Case("search-choice-metric-unknown", (*b, "--choice-metric", "f1"), ("f1",)),
        Case("search-overwrite-and-resume", (*b, "--overwrite", "--resume"), ("resume",)),
        Case("search-set-without-equals", (*b, "--set", "budget"), ("budget",)),
        Case("search-set-unknown-key", (*b, "--set", "bogus=1"), ("bogus",)),
    ]  # fmt: skip
    return cases + _config_cases("search", b, "budget", "lots")


def eval_cases() -> list[Case]:
    b = EVAL_BASE
    sup = ("--model", "pruned", "--adapter", "adapter")
    cases = _out_cases("eval", b, "--output-dir")
    cases += [
        Case("eval-output-is-model", (*b, "--output-dir", "base", "--overwrite"), ("base",)),
        Case("eval-output-inside-model", (*b, "--output-dir", "base/eval"), ("base",)),
        Case("eval-output-is-adapter", (*b, *sup, "--output-dir", "adapter", "--overwrite"),
             ("adapter",)),
        Case("eval-output-holds-task", (*b, "--tasks", "math:eval_out/math.json", "--output-dir",
             "eval_out", "--overwrite"), ("eval_out",), prep=_copy("math.json", "eval_out/math.json"),
             note="an eval output that holds this run's task file"),
        Case("eval-max-new-tokens-above-positions", (*b, "--model", "gpt2", "--max-new-tokens",
             "100"), ("max-new-tokens", "max_new_tokens"), note="issue 3"),
        Case("eval-ppl-seqlen-above-positions", (*b, "--model", "gpt2", "--tasks",
             "ppl:calib.txt", "--ppl-seqlen", "100"), ("ppl-seqlen", "ppl_seqlen"),
             note="issue 3"),
        Case("eval-garbage-gguf", (*b, "--model", "garbage.gguf"), ("garbage.gguf",),
             note="issue 5"),
        Case("eval-model-missing", (*b, "--model", "nosuchdir"), ("nosuchdir",)),
        Case("eval-adapter-corrupt-meta", (*b, *sup), ("shears_adapter.json",),
             prep=_corrupt("adapter/shears_adapter.json"), note="issue 5"),
        Case("eval-adapter-garbage-weights", (*b, *sup), ("adapter_model.safetensors",),
             prep=_corrupt("adapter/adapter_model.safetensors", _binary(512))),
        Case("eval-adapter-missing", (*b, "--adapter", "nosuchdir"), ("nosuchdir",)),
        Case("eval-adapter-not-adapter", (*b, "--adapter", "userdir"), ("userdir",)),
        Case("eval-adapter-does-not-fit", (*b, "--model", "gpt2", "--adapter", "adapter"),
             ("gpt2", "fit", "adapter"), warns=True),
        Case("eval-sub-adapter-garbage-file", (*b, *sup, "--sub-adapter", "bad.json"),
             ("bad.json",), note="issue 5"),
        Case("eval-sub-adapter-bad-inline", (*b, *sup, "--sub-adapter", '{"a": '),
             ("sub-adapter", "sub_adapter")),
        Case("eval-sub-adapter-unknown-group", (*b, *sup, "--sub-adapter", "sub_unknown.json"),
             ("nope",)),
        Case("eval-sub-adapter-bad-rank", (*b, *sup, "--sub-adapter", "sub_rank.json"), ("5",)),
        Case("eval-sub-adapter-missing", (*b, *sup, "--sub-adapter", "missing.json"),
             ("missing.json",)),
        Case("eval-sub-adapter-unknown-name", (*b, *sup, "--sub-adapter", "best"), ("best",)),
        Case("eval-sub-adapter-no-best", (*b, *sup, "--sub-adapter", "sub_nobest.json"),
             ("best", "sub_nobest.json")),
        Case("eval-tasks-missing-file", (*b, "--tasks", "math:missing.json"), ("missing.json",)),
        Case("eval-tasks-not-utf8", (*b, "--tasks", "math:latin1.json"), ("latin1.json",)),
        Case("eval-tasks-binary", (*b, "--tasks", "math:binary.json"), ("binary.json",)),
        Case("eval-tasks-ppl-binary", (*b, "--tasks", "ppl:binary.txt"), ("binary.txt",)),
        Case("eval-tasks-unknown-kind", (*b, "--tasks", "bogus:math.json"), ("bogus",)),
        Case("eval-tasks-unknown-preset", (*b, "--tasks", "nosuchtask"), ("nosuchtask",)),
        Case("eval-tasks-empty", (*b, "--tasks", ""), ("task",)),
        Case("eval-tasks-mc-wrong-fields", (*b, "--tasks", "mc:math.json"), ("math.json",
             "choices")),
        Case("eval-tasks-empty-list", (*b, "--tasks", "math:emptylist.json"), ("emptylist.json",)),
        Case("eval-batch-size-zero", (*b, "--batch-size", "0"), ("batch",)),
        Case("eval-limit-zero", (*b, "--limit", "0"), ("limit",)),
        Case("eval-max-new-tokens-zero", (*b, "--max-new-tokens", "0"), ("max_new_tokens",
             "max-new-tokens")),
        Case("eval-prompt-style-unknown", (*b, "--prompt-style", "vicuna"), ("vicuna",)),
        Case("eval-dtype-unknown", (*b, "--dtype", "float7"), ("float7",)),
        Case("eval-set-without-equals", (*b, "--set", "limit"), ("limit",)),
        Case("eval-set-unknown-key", (*b, "--set", "bogus=1"), ("bogus",)),
    ]  # fmt: skip
    return cases + _config_cases("eval", b, "gym_size", "many")


def export_cases() -> list[Case]:
    b = EXPORT_BASE
    cases = _out_cases("export", b, "--output-dir")
    cases += [
        Case("export-output-is-adapter", (*b, "--output-dir", "adapter", "--overwrite"),
             ("adapter",)),
        Case("export-output-inside-adapter", (*b, "--output-dir", "adapter/export"),
             ("adapter",)),
        Case("export-output-is-model", (*b, "--output-dir", "pruned", "--overwrite"),
             ("pruned",)),
        Case("export-output-holds-sub-adapter", (*b, "--sub-adapter", "export_out/sub.json",
             "--output-dir", "export_out", "--overwrite"), ("export_out",),
             prep=_copy("good_sub.json", "export_out/sub.json"),
             note="an export output that holds this run's --sub-adapter file"),
        Case("export-output-is-eval-output", (*b, "--eval-results", "eval_out/eval_results.json",
             "--output-dir", "eval_out", "--overwrite"), ("eval_out",),
             note="another command's output, holding this run's --eval-results"),
        Case("export-sub-adapter-garbage-file", (*b, "--sub-adapter", "bad.json"),
             ("bad.json",), note="issue 5"),
        Case("export-sub-adapter-bad-inline", (*b, "--sub-adapter", '{"a": '),
             ("sub-adapter", "sub_adapter")),
        Case("export-sub-adapter-unknown-group", (*b, "--sub-adapter", "sub_unknown.json"),
             ("nope",)),
        Case("export-sub-adapter-bad-rank", (*b, "--sub-adapter", "sub_rank.json"), ("5",)),
        Case("export-sub-adapter-missing", (*b, "--sub-adapter", "missing.json"),
             ("missing.json",)),
        Case("export-sub-adapter-no-best", (*b, "--sub-adapter", "sub_nobest.json"),
             ("best", "sub_nobest.json")),
        Case("export-sub-adapter-binary", (*b, "--sub-adapter", "binary.json"), ("binary.json",)),
        Case("export-adapter-corrupt-meta", b, ("shears_adapter.json",),
             prep=_corrupt("adapter/shears_adapter.json"), note="issue 5"),
        Case("export-adapter-garbage-weights", b, ("adapter_model.safetensors",),
             prep=_corrupt("adapter/adapter_model.safetensors", _binary(512))),
        Case("export-adapter-no-weights", b, ("adapter_model.safetensors",),
             prep=_rm("adapter/adapter_model.safetensors")),
        Case("export-adapter-missing", (*b, "--adapter", "nosuchdir"), ("nosuchdir",)),
        Case("export-adapter-not-adapter", (*b, "--adapter", "userdir"), ("userdir",)),
        Case("export-model-garbage-gguf", (*b, "--model", "garbage.gguf"), ("garbage.gguf",),
             warns=True, note="warns: not the adapter's base, then the error"),
        Case("export-model-does-not-fit", (*b, "--model", "gpt2"), ("gpt2", "fit"), warns=True),
        Case("export-keep-sparsity-without-merge", (*b, "--keep-sparsity"), ("keep-sparsity",)),
        Case("export-eval-results-missing", (*b, "--eval-results", "missing.json"),
             ("missing.json",)),
        Case("export-eval-results-garbage", (*b, "--eval-results", "bad.json"), ("bad.json",)),
        Case("export-dtype-unknown", (*b, "--dtype", "float7"), ("float7",)),
        Case("export-device-unknown", (*b, "--device", "gpu9"), ("gpu9",)),
    ]  # fmt: skip
    return cases + _config_cases("export", b, "merge", "maybe")


def generate_cases() -> list[Case]:
    b = GENERATE_BASE
    plain = tuple(a for i, a in enumerate(b) if a != "--adapter" and b[i - 1] != "--adapter")
    cases = _out_cases("generate", b, "--output-dir")
    cases += [
        Case("generate-output-is-model", (*b, "--output-dir", "pruned", "--overwrite"),
             ("pruned",), note="the output folder is the input model"),
        Case("generate-output-is-adapter", (*b, "--output-dir", "adapter", "--overwrite"),
             ("adapter",), note="the output folder is the input adapter"),
        Case("generate-output-holds-prompts", (*b[:5], "--prompts-file", "gen/p.txt",
             "--output-dir", "gen", "--overwrite"), ("gen",), prep=_put("gen/p.txt", "Hi\n"),
             note="an output folder that holds this run's prompts file"),
        Case("generate-prompts-file-binary", (*b[:5], "--prompts-file", "binary.txt"),
             ("binary.txt",)),
        Case("generate-prompts-file-not-utf8", (*b[:5], "--prompts-file", "latin1.txt"),
             ("latin1.txt",)),
        Case("generate-prompts-file-empty", (*b[:5], "--prompts-file", "empty.txt"),
             ("empty.txt",)),
        Case("generate-prompts-file-missing", (*b[:5], "--prompts-file", "missing.txt"),
             ("missing.txt",)),
        Case("generate-model-garbage-gguf", (*plain, "--model", "garbage.gguf"),
             ("garbage.gguf",)),
        Case("generate-model-missing", (*plain, "--model", "nosuchdir"), ("nosuchdir",)),
        Case("generate-adapter-not-adapter", (*b, "--adapter", "userdir"), ("userdir",)),
        Case("generate-sub-adapter-unknown-group", (*b, "--sub-adapter", "sub_unknown.json"),
             ("nope", "sub_unknown.json")),
        Case("generate-sub-adapter-bad-rank", (*b, "--sub-adapter", "sub_rank.json"), ("5",)),
        Case("generate-max-new-tokens-above-positions", ("generate", "--model", "gpt2",
             "--prompt", "Hi", "--max-new-tokens", "100", "--device", "cpu"),
             ("max-new-tokens", "max_new_tokens")),
        Case("generate-top-p-without-sampling", (*b, "--top-p", "0.5"), ("top-p", "0.5")),
        Case("generate-set-without-equals", (*b, "--set", "noequals"), ("noequals",)),
        Case("generate-device-unknown", (*b, "--device", "gpu9"), ("gpu9",)),
    ]  # fmt: skip
    return cases + _config_cases("generate", b, "batch_size", "abc")


def deploy_cases() -> list[Case]:
    b = DEPLOY_BASE
    w8a8 = (*b, "--precision", "w8a8", "--nsamples", "2", "--seqlen", "16")
    cases = _out_cases("deploy", b, "--output-dir")
    cases += [
        Case("deploy-output-is-model", (*b, "--output-dir", "pruned", "--overwrite"),
             ("pruned",), note="the output folder is the input model"),
        Case("deploy-output-is-adapter", (*b, "--output-dir", "adapter", "--overwrite"),
             ("adapter",), note="the output folder is the input adapter"),
        Case("deploy-output-inside-model", (*b, "--output-dir", "pruned/ir"), ("pruned",)),
        Case("deploy-precision-unknown", (*b, "--precision", "int4"), ("int4",)),
        Case("deploy-merge-unknown", (*b, "--merge", "plain"), ("plain",)),
        Case("deploy-sparse-rate-out-of-range", (*b, "--precision", "w8a8-sparse",
             "--sparse-rate", "1.5"), ("1.5", "sparse-rate", "sparse_rate")),
        Case("deploy-model-missing", ("deploy", "--model", "nosuchdir", "--output-dir", "out"),
             ("nosuchdir",)),
        Case("deploy-model-garbage-gguf", ("deploy", "--model", "garbage.gguf", "--output-dir",
             "out"), ("garbage.gguf",)),
        Case("deploy-adapter-not-adapter", (*b, "--adapter", "userdir"), ("userdir",)),
        Case("deploy-sub-adapter-unknown-group", (*b, "--sub-adapter", "sub_unknown.json"),
             ("nope", "sub_unknown.json")),
        Case("deploy-sub-adapter-bad-rank", (*b, "--sub-adapter", "sub_rank.json"), ("5",)),
        Case("deploy-w8a8-float-unknown", (*w8a8, "--w8a8-float", "nope_proj"),
             ("nope_proj",)),
        Case("deploy-calibration-binary", (*w8a8, "--calibration", "binary.txt"),
             ("binary.txt",)),
        Case("deploy-calibration-missing", (*w8a8, "--calibration", "missing.txt"),
             ("missing.txt",)),
        Case("deploy-dtype-unknown", (*b, "--dtype", "float7"), ("float7",)),
        Case("deploy-set-without-equals", (*b, "--set", "noequals"), ("noequals",)),
    ]  # fmt: skip
    return cases + _config_cases("deploy", b, "nsamples", "abc")


def run_cases() -> list[Case]:
    b = ("run", *RUN_BASE)
    cases = _out_cases("run", b, "run_dir")

    def conf(name: str) -> tuple[str, ...]:
        return ("run", name, *RUN_BASE)

    cases += [
        Case("run-run-dir-is-model", (*b, "run_dir=base", "--overwrite"), ("base",),
             note="issue 2: the run folder is the input model"),
        Case("run-run-dir-inside-model", (*b, "run_dir=base/run"), ("base",)),
        Case("run-run-dir-holds-task", (*b, "run_dir=proj", "task=proj/train.json",
             "--overwrite"), ("proj",), prep=_copy("train.json", "proj/train.json")),
        Case("run-override-unknown-key", (*b, "bogus=1"), ("bogus",)),
        Case("run-override-unknown-stage-key", (*b, "train.nope=1"), ("train.nope", "nope")),
        Case("run-override-wrong-type", (*b, "train.lr=abc"), ("train.lr",)),
        Case("run-override-bad-value", (*b, "prune.sparsity=1.5"), ("sparsity",)),
        Case("run-override-section-not-mapping", (*b, "prune=5"), ("prune",)),
        Case("run-override-through-scalar", (*b, "seed.x=1"), ("seed",)),
        Case("run-override-wired-key", (*b, "train.model=x"), ("train.model",)),
        Case("run-override-invalid-yaml", (*b, "train.lr=[unclosed"), ("train.lr", "[unclosed")),
        Case("run-override-empty-key", (*b, "=5"), ("=5", "''", "key")),
        Case("run-override-without-equals", (*b, "noequals"), ("noequals",)),
        Case("run-config-missing", conf("missing.yaml"), ("missing.yaml",)),
        Case("run-config-invalid-yaml", conf("bad.yaml"), ("bad.yaml",)),
        Case("run-config-not-mapping", conf("list.yaml"), ("list.yaml",)),
        Case("run-config-binary", conf("binary.yaml"), ("binary.yaml",)),
        Case("run-config-unknown-key", conf("unknown.yaml"), ("bogus_key",)),
        Case("run-config-wrong-type", conf("cfg.yaml"), ("seed",),
             prep=_put("cfg.yaml", "seed: abc\n")),
        Case("run-model-garbage-gguf", (*b, "model=garbage.gguf"), ("garbage.gguf",),
             note="issue 5"),
        Case("run-model-missing", (*b, "model=nosuchdir"), ("nosuchdir",)),
        Case("run-task-missing", (*b, "task=missing.json"), ("missing.json",)),
        Case("run-task-not-utf8", (*b, "task=latin1.json"), ("latin1.json",), note="issue 5"),
        Case("run-task-binary", (*b, "task=binary.json"), ("binary.json",)),
        Case("run-task-empty-list", (*b, "task=emptylist.json"), ("emptylist.json",)),
        Case("run-task-wrong-fields", (*b, "task=nofields.json"), ("nofields.json",)),
        Case("run-eval-task-unknown-kind", (*b, "eval_tasks=[bogus:x]"), ("bogus",)),
        Case("run-eval-task-missing-file", (*b, "eval_tasks=[math:missing.json]"),
             ("missing.json",)),
        Case("run-search-data-missing", (*b, "search.data=missing.json"), ("missing.json",),
             note="issue 4: the preflight must see the search stage's data"),
        Case("run-search-start-garbage", (*b, "search.algorithm=hill-climbing",
             "search.start=bad.json"), ("bad.json",), note="issue 4/5: preflight of --start"),
        Case("run-search-split-test", (*b, "search.data_split=test"), ("test",)),
        Case("run-prune-seqlen-above-positions", (*b, *RUN_GPT2, "prune.seqlen=100"),
             ("seqlen",), note="issue 3"),
        Case("run-train-cutoff-above-positions", (*b, *RUN_GPT2, "train.cutoff_len=100000"),
             ("cutoff",), note="issue 3"),
        Case("run-eval-max-new-tokens-above-positions", (*b, *RUN_GPT2,
             "eval.max_new_tokens=100"), ("max_new_tokens",), note="issue 3"),
        Case("run-prune-targets-bad-regex", (*b, 'prune.targets=["re:["]'), ("re:[",),
             note="issue 5"),
        Case("run-prune-pattern-and-sparsity", (*b, 'prune.pattern="2:4"',
             "prune.sparsity=0.3"), ("sparsity", "2:4"), note="issue 6"),
        Case("run-prune-calibration-binary", (*b, "prune.calibration=binary.txt"),
             ("binary.txt",), note="issue 6"),
        Case("run-train-groups-typo", (*b,
             "train.space.groups=[[q_proj,k_prj,v_proj],[up_proj],[down_proj]]"), ("k_prj",),
             note="issue 6"),
    ]  # fmt: skip
    return cases


def all_cases() -> list[Case]:
    cases = (
        prune_cases()
        + train_cases()
        + search_cases()
        + eval_cases()
        + export_cases()
        + generate_cases()
        + (deploy_cases() if HAS_DEPLOY else [])
        + run_cases()
    )
    ids = [c.id for c in cases]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    assert not dup, f"duplicate case ids: {dup}"
    return cases


CASES = all_cases()


def describe(o: Outcome) -> str:
    """A failure report for one case: what ran, what came back, what changed on disk."""
    c = o.case
    parts = [
        f"{c.id}: {o.outcome} ({o.reason})",
        f"argv: shears {' '.join(c.argv)}" + (f"  [cwd {c.cwd}]" if c.cwd != "." else ""),
        f"exit code: {o.rc}",
        "stderr:\n" + (o.stderr.strip() or "(empty)"),
    ]
    if o.exc:
        parts.append("escaped exception:\n" + o.exc)
    for name in ("new", "changed", "vanished"):
        if getattr(o, name):
            parts.append(f"{name}: {getattr(o, name)[:20]}")
    return "\n".join(parts)


# ---------------------------------------------------------------------------- controls

# The other side of the contract: --overwrite still replaces a folder the same command wrote.
OWN_OUTPUT_RERUNS = {
    "prune": ("prune", "--model", "base", "--method", "magnitude", "--output-dir", "pruned",
              "--no-plot", "--device", "cpu", "--overwrite"),
    "search": (*SEARCH_BASE, "--output-dir", "search_out", "--overwrite"),
    "eval": (*EVAL_BASE, "--output-dir", "eval_out", "--overwrite"),
    "export": (*EXPORT_BASE, "--output-dir", "export_out", "--overwrite"),
    "generate": (*GENERATE_BASE, "--output-dir", "generate_out", "--overwrite"),
    **({"deploy": (*DEPLOY_BASE, "--output-dir", "deploy_out", "--overwrite")} if HAS_DEPLOY else {}),
}  # fmt: skip


def rerun_own_output(command: str, template: Path, case_dir: Path) -> tuple[RunResult, list[str]]:
    """Run ``OWN_OUTPUT_RERUNS[command]`` (``--overwrite`` on that command's earlier output) in a
    copy of the world; return the result and every path outside that output folder that is new,
    changed or gone (should be none: no temp or ``.old`` siblings, inputs untouched)."""
    argv = list(OWN_OUTPUT_RERUNS[command])
    target = argv[len(argv) - 1 - argv[::-1].index("--output-dir") + 1]  # the last one given
    root = copy_world(template, case_dir / "w")
    before = snapshot(case_dir)
    res = run_argv(argv, root)
    after = snapshot(case_dir)
    inside = f"w/{target}/"
    outside = sorted(
        k
        for k in set(before) | set(after)
        if not (k + "/").startswith(inside) and before.get(k) != after.get(k)
    )
    return res, outside
