import json

import pytest
from eval_helpers import MATH_ROWS, MC_ROWS, write_json

from shears.errors import ShearsError
from shears.evaluate.tasks import TaskSpec, load_task_data, make_choices, parse_task


def test_parse_task_forms():
    assert parse_task("gsm_symbolic") == TaskSpec(
        kind="math", source="gym", path="gsm_symbolic", name="gsm_symbolic"
    )
    s = parse_task("mc:data/piqa.json")
    assert (s.kind, s.source, s.path, s.name) == ("mc", "json", "data/piqa.json", "piqa_mc")
    # LLM-Adapters layout dataset/<task>/test.json: the folder names the task
    assert parse_task("math:dataset/gsm8k/test.json").name == "gsm8k"
    assert parse_task("math:dataset/svamp/test.json").name == "svamp"
    assert parse_task("math:gym:chain_sum?max_terms=2").name == "chain_sum"
    s = parse_task("aqua:aqua.jsonl")
    assert (s.kind, s.name) == ("letter", "aqua_letter")
    s = parse_task("math:hf:openai/gsm8k:main")
    assert (s.source, s.path, s.config) == ("hf", "openai/gsm8k", "main")
    s = parse_task("ppl:default")
    assert (s.kind, s.source, s.path) == ("ppl", "text", "default")
    assert parse_task("lmeval:arc_easy").source == "lmeval"
    s = parse_task({"kind": "mc", "source": "gym", "path": "chain_sum", "num_choices": 3})
    assert s.name == "chain_sum_mc" and s.num_choices == 3


@pytest.mark.parametrize(
    "bad, match",
    [
        ("gsm9k", "unknown task 'gsm9k'"),
        ("essay:x.json", "unknown task kind 'essay'"),
        ({"kind": "math", "source": "ftp", "path": "x"}, "task source 'ftp'"),
        ({"kind": "math", "path": "x", "colour": 1}, "unknown config key"),
        ({"kind": "math", "source": "json"}, "needs a path"),
    ],
)
def test_parse_task_errors(bad, match):
    with pytest.raises(ShearsError, match=match):
        parse_task(bad)


def test_load_math_json_and_limit(tmp_path):
    f = write_json(tmp_path / "m.json", MATH_ROWS)
    rows = load_task_data(parse_task(f"math:{f}"), limit=2)
    assert [r["answer"] for r in rows] == ["5", "1000"]
    assert set(rows[0]) == {"instruction", "input", "answer"}


@pytest.mark.parametrize(
    "kind, rows, match",
    [
        ("math", [{"instruction": "q"}], "record 0 has no 'answer' field"),
        ("math", [{"answer": "3"}], "record 0 has no 'instruction' field"),
        ("math", [{"instruction": "q", "answer": "three"}], "is not a number"),
        ("letter", [{"instruction": "q", "answer": "7"}], "not a letter A-E"),
        ("mc", [{"question": "q", "label": 0}], "no 'choices' field"),
        ("mc", [{"question": "q", "choices": ["a"], "label": 0}], "list of >= 2"),
        ("mc", [{"question": "q", "choices": ["a", "b"]}], "no 'label'"),
        ("mc", [{"question": "q", "choices": ["a", "b"], "label": 2}], "outside its 2 choices"),
        ("mc", [{"question": "q", "choices": ["a", "b"], "answer": "c"}], "not one of its choices"),
        ("mc_gen", [{"instruction": "q"}], "no 'answer' field"),
    ],
)
def test_missing_fields_are_one_line_errors(tmp_path, kind, rows, match):
    f = write_json(tmp_path / "d.json", rows)
    with pytest.raises(ShearsError, match=match) as info:
        load_task_data(parse_task(f"{kind}:{f}"))
    assert "\n" not in str(info.value)


def test_missing_file_and_bad_json(tmp_path):
    with pytest.raises(ShearsError, match="does not exist"):
        load_task_data(parse_task(f"math:{tmp_path / 'nope.json'}"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ShearsError, match="not valid JSON"):
        load_task_data(parse_task(f"math:{tmp_path / 'bad.json'}"))
    with pytest.raises(ShearsError, match="does not exist"):
        load_task_data(parse_task(f"ppl:{tmp_path / 'nope.txt'}"))


def test_mc_json_formats(tmp_path):
    f = write_json(tmp_path / "mc.json", MC_ROWS)
    rows = load_task_data(parse_task(f"mc:{f}"))
    assert [r["label"] for r in rows] == [1, 0, 1]
    assert rows[0]["instruction"] == "Pick the color: red"


def test_mc_gen_builds_llm_adapters_prompt(tmp_path):
    f = write_json(tmp_path / "mc.json", MC_ROWS[:1])
    (row,) = load_task_data(parse_task(f"mc_gen:{f}"))
    assert "Answer2: red" in row["instruction"]
    assert row["instruction"].endswith("Answer format: answer1/answer2/answer3")
    assert row["answer"] == "answer2" and row["answer_words"] == ["answer1", "answer2", "answer3"]
    # LLM-Adapters commonsense records: the answer vocabulary is the set of answers
    f2 = write_json(
        tmp_path / "boolq.json",
        [{"instruction": "q1", "answer": "true"}, {"instruction": "q2", "answer": "false"}],
    )
    rows = load_task_data(parse_task(f"mc_gen:{f2}"))
    assert rows[0]["answer_words"] == ["true", "false"]


def test_make_choices_numeric_and_text():
    rows = [
        {"instruction": f"q{i}", "answer": a} for i, a in enumerate(["12", "1,000", "-3", "cat"])
    ]
    out = make_choices(rows, num_choices=4, seed=0)
    for r in out:
        assert len(r["choices"]) == 4 and len(set(r["choices"])) == 4
    assert [r["choices"][r["label"]] for r in out] == ["12", "1000", "-3", "cat"]
    assert make_choices(rows, 4, seed=0) == out  # reproducible
    assert make_choices(rows, 4, seed=1) != out


def test_gym_tasks_use_the_test_split():
    pytest.importorskip("reasoning_gym")
    rows = load_task_data(parse_task("gsm_symbolic"), limit=3)
    assert len(rows) == 3 and all(r["answer"] for r in rows)
    mc = load_task_data(parse_task("gsm_symbolic_mc"), limit=3)
    assert all(len(r["choices"]) == 4 and 0 <= r["label"] < 4 for r in mc)
    # same questions: MC is built from the same held-out problems
    assert [r["instruction"] for r in mc] == [r["instruction"] for r in rows]
    from shears.data.tasks import load_reasoning_gym

    train = {r["template"] for r in load_reasoning_gym("gsm_symbolic", "train", 40)}
    test = {r["template"] for r in load_reasoning_gym("gsm_symbolic", "test", 10)}
    assert not train & test


def test_hf_source_with_local_dataset_folder(tmp_path, monkeypatch):
    """``<kind>:hf:<dataset>`` goes through ``datasets.load_dataset``; a local folder of JSON
    files stands in for a hub dataset (GSM8K layout: question, answer ending in '#### N')."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    folder = tmp_path / "gsm8k_like"
    folder.mkdir()
    rows = [
        {"question": "2 + 2?", "answer": "2 + 2 = 4\n#### 4"},
        {"question": "Big?", "answer": "so\n#### 1,250"},
    ]
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    spec = parse_task(f"math:hf:{folder}")
    got = load_task_data(spec)
    assert [(r["instruction"], r["answer"]) for r in got] == [("2 + 2?", "4"), ("Big?", "1250")]
    with pytest.raises(ShearsError, match="could not load dataset"):
        load_task_data(parse_task(f"math:hf:{tmp_path / 'missing_ds'}"))


def test_gym_mc_scores_choices_after_the_trained_answer_prefix():
    pytest.importorskip("reasoning_gym")
    from shears.data.tasks import ANSWER_PREFIX, load_reasoning_gym

    rows = load_task_data(parse_task("mc:gym:family_relationships"), limit=6)
    train = load_reasoning_gym("family_relationships", "train", 3)
    # training targets read "The answer is <word>.", so the choices are scored after that prefix
    assert all(r["output"].startswith(ANSWER_PREFIX + " ") for r in train)
    assert all(r["answer_prefix"] == ANSWER_PREFIX for r in rows)
    assert all(len(r["choices"]) == 4 and 0 <= r["label"] < 4 for r in rows)
