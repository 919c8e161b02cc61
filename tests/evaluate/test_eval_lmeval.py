"""lm-evaluation-harness bridge, offline: a local task YAML over a local JSON file."""

import json

import pytest
from eval_helpers import tiny_lm

from shears.errors import ShearsError
from shears.evaluate.choice import choice_predictions, loglikelihoods
from shears.evaluate.lmeval import check_lmeval_tasks, run_lmeval

pytest.importorskip("lm_eval")

DOCS = [
    {"question": "The answer is", "choices": ["42.", "a task", "Below"], "label": 0},
    {"question": "Below is an", "choices": ["instruction", "answer"], "label": 0},
    {"question": "that describes a", "choices": ["task.", "is 42"], "label": 1},
    {"question": "Write a", "choices": ["response", "task", "42"], "label": 2},
]

YAML = """task: shears_local_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture
def local_task(tmp_path):
    data = tmp_path / "docs.json"
    data.write_text(json.dumps(DOCS))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "shears_local_mc.yaml").write_text(YAML.format(data=data))
    return str(tasks)


def test_lmeval_runs_local_task_on_in_memory_model(tiny_tokenizer, local_task, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tok = tiny_tokenizer
    model = tiny_lm(tok)
    res = run_lmeval(model, tok, ["shears_local_mc"], include_path=local_task, batch_size=2)
    got = res["shears_local_mc"]
    assert got["count"] == len(DOCS)
    # the harness scored our in-memory model: same numbers as our own log-likelihoods of
    # (doc_to_text, " " + choice)
    picks = []
    for d in DOCS:
        ctx = f"Question: {d['question']}\nAnswer:"
        lls = loglikelihoods(model, tok, [(ctx, " " + c) for c in d["choices"]], "alpaca")
        picks.append(choice_predictions([s for s, _ in lls], d["choices"]))
    acc = sum(p["acc"] == d["label"] for p, d in zip(picks, DOCS, strict=True)) / len(DOCS)
    acc_norm = sum(p["acc_norm"] == d["label"] for p, d in zip(picks, DOCS, strict=True)) / len(
        DOCS
    )
    assert got["acc"] == pytest.approx(acc)
    assert got["acc_norm"] == pytest.approx(acc_norm)


def test_unknown_lmeval_task_is_clear(local_task, monkeypatch):
    import shears.evaluate.lmeval as bridge

    # the real check indexes ~15k built-in task YAMLs (tens of seconds); a stand-in index keeps
    # this test about our error, the test above exercises the real harness
    monkeypatch.setattr(
        bridge,
        "task_manager",
        lambda tasks, include_path=None: type("TM", (), {"all_tasks": ["shears_local_mc"]})(),
    )
    with pytest.raises(ShearsError, match="lm-eval knows no task 'nope_task'"):
        check_lmeval_tasks(["nope_task"], local_task)
    check_lmeval_tasks(["shears_local_mc"], local_task)
    # a local-only request never indexes the built-ins
    monkeypatch.undo()
    bridge._task_manager.cache_clear()
    assert "shears_local_mc" in bridge.task_manager(["shears_local_mc"], local_task).all_tasks
    assert bridge._task_manager.cache_info().currsize == 1
