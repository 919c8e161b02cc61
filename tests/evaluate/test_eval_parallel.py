"""Data-parallel sharing of the evaluation batches, in-process: two threads stand for two ranks
(their ``gather`` meets at a barrier), each runs its share of every task, and both end with the
one-process results. The real launch (torchrun, gloo) is in test_eval_distributed.py."""

import threading
from collections import Counter
from dataclasses import dataclass, field

import pytest
from eval_helpers import tiny_lm

from shears.errors import ShearsError
from shears.evaluate.config import EvalConfig
from shears.evaluate.parallel import DataParallel, merge_indexed
from shears.evaluate.perplexity import window_batches
from shears.evaluate.suite import evaluate_model


@dataclass(frozen=True)
class ThreadRanks(DataParallel):
    """A rank played by a thread: ``gather`` swaps items with the other threads."""

    board: dict = field(default_factory=dict, compare=False)

    def gather(self, items):
        self.board["slots"][self.rank] = list(items)
        self.board["barrier"].wait()
        out = [x for r in range(self.world) for x in self.board["slots"][r]]
        self.board["barrier"].wait()  # everyone has read before the next gather writes
        return out


def test_merge_indexed_orders_and_checks():
    assert merge_indexed([(2, "c"), (0, "a"), (1, "b")], 3) == ["a", "b", "c"]
    with pytest.raises(ShearsError, match="missing 1 of 3"):
        merge_indexed([(0, "a"), (2, "c")], 3)
    with pytest.raises(ShearsError, match="index 1 of 3"):
        merge_indexed([(1, "a"), (1, "b"), (0, "c")], 3)


def test_round_robin_of_batches():
    two = [DataParallel(r, 2) for r in range(2)]
    assert [[b for b in range(5) if p.mine(b)] for p in two] == [[0, 2, 4], [1, 3]]
    assert DataParallel().is_main and not two[1].is_main


def test_window_batches_keep_one_length():
    windows = [(0, 4, 1), (4, 8, 1), (8, 12, 1), (12, 14, 1)]
    assert window_batches(windows, 2) == [[0, 1], [2], [3]]
    assert window_batches(windows, 8) == [[0, 1, 2], [3]]


def _tasks(tmp_path):
    from eval_helpers import write_json

    math = [{"instruction": f"What is {i} plus {i}?", "answer": str(2 * i)} for i in range(5)]
    mc = [
        {"question": f"Pick {w}" + "?" * i, "choices": [w, "blue", "a long one"], "label": i % 3}
        for i, w in enumerate(["red", "cat", "sun", "tree", "sea"])
    ]
    (tmp_path / "held.txt").write_text(" ".join(f"word{i} and text" for i in range(60)))
    return [
        f"math:{write_json(tmp_path / 'math.json', math)}",
        f"mc:{write_json(tmp_path / 'mc.json', mc)}",
        f"mc_gen:{tmp_path / 'mc.json'}",
        f"ppl:{tmp_path / 'held.txt'}",
    ]


def test_two_thread_ranks_share_batches_and_agree(tmp_path, tiny_tokenizer):
    cfg = EvalConfig(
        tasks=_tasks(tmp_path), batch_size=2, max_new_tokens=4, ppl_seqlen=32, progress=False
    )
    model = tiny_lm(tiny_tokenizer)
    alone = evaluate_model(model, tiny_tokenizer, cfg=cfg)

    calls: Counter = Counter()
    model.register_forward_hook(lambda *a: calls.update([threading.current_thread().name]))
    board = {"slots": [None, None], "barrier": threading.Barrier(2, timeout=120)}
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def rank(r: int) -> None:
        try:
            ranks = ThreadRanks(r, 2, board)
            results[r] = evaluate_model(model, tiny_tokenizer, cfg=cfg, parallel=ranks)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            board["barrier"].abort()

    threads = [threading.Thread(target=rank, args=(r,), name=f"rank{r}") for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert calls["rank0"] > 0 and calls["rank1"] > 0  # both ranks ran batches
    for res in results.values():
        assert res["predictions"] == alone["predictions"]
        for name, metrics in alone["tasks"].items():
            got = {k: v for k, v in res["tasks"][name].items() if k != "time_s"}
            want = {k: v for k, v in metrics.items() if k != "time_s"}
            if "perplexity" in want:
                assert got.pop("perplexity") == pytest.approx(want.pop("perplexity"), rel=1e-6)
            assert got == want
        assert res["mean_accuracy"] == alone["mean_accuracy"]
