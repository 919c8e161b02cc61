"""``shears generate`` on bad input: one line naming the bad value and what is allowed, exit code
2, before the model loads, nothing written."""

from __future__ import annotations

import pytest

import shears.models
from input_helpers import BINARY, LATIN1_JSON, base_with_adapter, one_error, write


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from conftest import build_tiny_tokenizer

    root = tmp_path_factory.mktemp("gen_bad")
    base, adapter = base_with_adapter(root / "w", build_tiny_tokenizer())
    write(root / "empty.txt", "\n  \n")
    write(root / "latin1.txt", LATIN1_JSON)
    write(root / "binary.txt", BINARY)
    write(root / "prompts.csv", "a,b\n")
    write(root / "bad.jsonl", '{"instruction": "ok"}\n{"instruction": \n')
    write(root / "fields.jsonl", '{"question": "no known field"}\n')
    write(root / "notobj.jsonl", '["a list"]\n')
    write(root / "blank.jsonl", '{"prompt": "  "}\n')
    return root, str(base), str(adapter)


@pytest.fixture
def no_load(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(shears.models, "load_model", boom)


def _f(root, name):
    return str(root / name)


CASES = {
    # id: (argv after the model, text the error line holds)
    "no-prompts": ((), "no prompts given"),
    "both-sources": (("--prompt", "a", "--prompts-file", "{empty.txt}"), "both given"),
    "empty-prompt": (("--prompt", "a", "--prompt", " "), "--prompt number 2 is empty"),
    "file-missing": (("--prompts-file", "{missing.txt}"), "missing.txt' does not exist"),
    "file-suffix": (("--prompts-file", "{prompts.csv}"), "must end in .txt"),
    "file-empty": (("--prompts-file", "{empty.txt}"), "empty.txt' holds no prompts"),
    "file-latin1": (("--prompts-file", "{latin1.txt}"), "is not UTF-8 text"),
    "file-binary": (("--prompts-file", "{binary.txt}"), "is not UTF-8 text"),
    "jsonl-invalid": (("--prompts-file", "{bad.jsonl}"), "bad.jsonl' line 2 is not valid JSON"),
    "jsonl-fields": (("--prompts-file", "{fields.jsonl}"), "none of the fields instruction"),
    "jsonl-not-object": (("--prompts-file", "{notobj.jsonl}"), "line 1 is not an object"),
    "jsonl-blank": (("--prompts-file", "{blank.jsonl}"), "'prompt' must be a non-empty string"),
    "max-new-zero": (("--prompt", "a", "--max-new-tokens", "0"), "--max-new-tokens must be >= 1"),
    "max-new-beyond": (("--prompt", "a", "--max-new-tokens", "1024"), "use --max-new-tokens <= 1023"),
    "batch-zero": (("--prompt", "a", "--batch-size", "0"), "--batch-size must be >= 1, got 0"),
    "style": (("--prompt", "a", "--prompt-style", "vicuna"), "'vicuna' is not known; allowed"),
    "precision": (("--prompt", "a", "--precision", "fp8"), "--precision 'fp8' is not known"),
    "temperature": (("--prompt", "a", "--temperature", "-1"), "--temperature must be >= 0"),
    "top-p-range": (("--prompt", "a", "--temperature", "1", "--top-p", "1.5"), "(0, 1]"),
    "top-p-greedy": (("--prompt", "a", "--top-p", "0.9"), "give --temperature > 0"),
    "sub-adapter": (("--prompt", "a", "--adapter", "{adapter}", "--sub-adapter", "best"),
                    "--sub-adapter 'best' is neither heuristic/max/min"),
    "adapter-missing": (("--prompt", "a", "--adapter", "{nosuch}"), "'{nosuch}' does not exist"),
    "output-is-model": (("--prompt", "a", "--output-dir", "{model}"), "holds the input"),
    "set-unknown": (("--prompt", "a", "--set", "bogus=1"), "unknown config key 'bogus'"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_before_loading(case, world, capsys, no_load, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, here either
    root, base, adapter = world
    names = {"adapter": adapter, "model": base, "nosuch": str(root / "nosuch")}

    def fill(text: str) -> str:
        for key, value in names.items():
            text = text.replace("{" + key + "}", value)
        return text.replace("{", str(root) + "/").replace("}", "")

    extra, match = CASES[case]
    argv = ["generate", "--model", base, *map(fill, extra)]
    one_error(capsys, *argv, match=fill(match) if "{" in match else match)
    assert not any(tmp_path.iterdir())


def test_missing_model(world, capsys, no_load, tmp_path):
    one_error(capsys, "generate", "--model", str(tmp_path / "nosuch"), "--prompt", "a",
              match="nosuch' not found: expected a local model folder")  # fmt: skip
