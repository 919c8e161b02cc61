"""``TrainResult``: the one writer and reader of ``train_results.json``, keys in file order."""

import json

from shears.train import TrainResult
from shears.train.run import RESULTS

KEYS = [
    "global_steps", "epochs", "final_loss", "first_loss", "train_loss", "train_runtime_s",
    "train_samples_per_second", "train_steps_per_second", "examples", "examples_dropped",
    "examples_truncated", "tokens", "effective_batch_size", "world_size", "device", "precision",
    "resumed_from", "r_max", "groups", "adapter_modules", "trainable_parameters",
    "adapter_parameters", "peak_rss_mib",
]  # fmt: skip


def _result(**overrides) -> TrainResult:
    values = {k: 1 for k in KEYS}
    values.update(device="cpu", precision="fp32", resumed_from=None)
    values["adapter_parameters"] = {"max": 3, "heuristic": 2, "min": 1}
    return TrainResult(**{**values, **overrides})


def test_write_read_round_trip_in_file_order(tmp_path):
    res = _result()
    res.write(tmp_path)
    assert RESULTS == "train_results.json"
    saved = json.loads((tmp_path / RESULTS).read_text())
    assert list(saved) == KEYS  # peak_cuda_mib only on CUDA
    assert TrainResult.read(tmp_path) == res
    on_gpu = _result(peak_cuda_mib=2.5)
    assert list(on_gpu.to_dict()) == [*KEYS, "peak_cuda_mib"]


def test_read_an_older_file_missing_a_key(tmp_path):
    raw = _result().to_dict()
    del raw["tokens"]
    (tmp_path / RESULTS).write_text(json.dumps(raw))
    assert TrainResult.read(tmp_path).tokens is None
