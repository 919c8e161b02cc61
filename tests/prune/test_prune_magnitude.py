from conftest import tiny_model
from shears.prune import PruneConfig, prune_model


def test_magnitude_needs_no_calibration_and_is_exact_per_row():
    model = tiny_model("llama")
    report = prune_model(
        model, None, PruneConfig(method="magnitude", sparsity=0.25), progress=False
    )
    assert report.calibration is None
    for name, info in report.layers.items():
        w = model.get_submodule(name).weight
        assert ((w == 0).sum(1) == int(w.shape[1] * 0.25)).all(), name
        assert info["sparsity"] == (w == 0).float().mean().item()
