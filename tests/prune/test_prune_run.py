"""prune_model / run_prune (``shears.prune.run``): every architecture prunes, saves, reloads with
the same zeros/logits."""

import json

import pytest
import torch
from prune_helpers import TEXT, tiny_model_for
from transformers import AutoModelForCausalLM

from conftest import ARCHS, tiny_model
from shears.artifacts import PRUNE_CONFIG, PRUNE_PLOT, PRUNE_REPORT
from shears.models import find_targets
from shears.prune import PruneConfig, prune_model, run_prune
from shears.prune.run import save_pruned
from shears.sparsity import count_parameters


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "calib.txt"
    p.write_text(TEXT)
    return p


@pytest.fixture
def model_dir(tmp_path, tiny_tokenizer):
    def make(arch="llama"):
        d = tmp_path / f"tiny-{arch}"
        tiny_model_for(tiny_tokenizer, arch).save_pretrained(d)
        tiny_tokenizer.save_pretrained(d)
        return d

    return make


@pytest.mark.parametrize("arch", ARCHS)
def test_each_arch_prunes_saves_and_reloads_same_zeros_and_logits(arch, tmp_path, tiny_tokenizer):
    model = tiny_model_for(tiny_tokenizer, arch)
    cfg = PruneConfig(
        model=arch, output_dir=str(tmp_path / "out"), nsamples=4, seqlen=32, batch_size=2
    )
    report = prune_model(model, tiny_tokenizer, cfg, calibration=[TEXT], progress=False)
    assert report.targets["sparsity"] == pytest.approx(0.5)
    assert report.calibration.tokens == 128
    save_pruned(model, tiny_tokenizer, report, cfg)

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    for name in find_targets(model):
        a, b = model.get_submodule(name).weight, reloaded.get_submodule(name).weight
        assert torch.equal(a == 0, b == 0), name
        assert torch.equal(a, b), name
    x = torch.randint(0, len(tiny_tokenizer), (2, 12))
    with torch.no_grad():
        assert torch.allclose(model(x).logits, reloaded(x).logits, atol=1e-6)
    saved = json.loads((tmp_path / "out" / PRUNE_REPORT).read_text())
    assert saved["layers"] == report.layers
    assert (tmp_path / "out" / PRUNE_PLOT).stat().st_size > 1000


def test_run_prune_end_to_end_with_text_file(model_dir, text_file, tmp_path):
    src = model_dir("gpt2")
    out = tmp_path / "pruned"
    cfg = PruneConfig(
        model=str(src),
        output_dir=str(out),
        method="sparsegpt",
        pattern="2:4",
        calibration=str(text_file),
        nsamples=4,
        seqlen=32,
        batch_size=3,
        eval_ppl=True,
        ppl_source=str(text_file),
        ppl_seqlen=32,
        ppl_tokens=200,
    )
    report = run_prune(cfg, progress=False)
    assert report.pattern == "2:4" and report.sparsity == 0.5
    assert report.calibration.source == str(text_file)
    assert report.perplexity.dense > 1 and report.perplexity.pruned > 1
    assert report.perplexity.dense != report.perplexity.pruned
    assert report.model_parameters["nonzero_parameters"] < report.model_parameters["parameters"]
    assert set(report.seconds) >= {"load", "prune", "perplexity", "total"}
    assert report.peak_memory["peak_rss_mib"] > 0
    files = {p.name for p in out.iterdir()}
    assert {PRUNE_REPORT, PRUNE_PLOT, PRUNE_CONFIG, "config.json", "model.safetensors"} <= files
    assert json.loads((out / PRUNE_CONFIG).read_text())["pattern"] == "2:4"
    saved = json.loads((out / PRUNE_REPORT).read_text())  # the result is what the file holds
    assert list(saved) == list(report.to_dict()) and saved == report.to_dict()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pruned.tmp")]
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    for name, info in report.layers.items():
        w = reloaded.get_submodule(name).weight.t()  # Conv1D: (in, out) -> (out, in)
        assert float((w == 0).float().mean()) == info["sparsity"] == 0.5
        assert ((w == 0).reshape(w.shape[0], -1, 4).sum(2) == 2).all()
    # embeddings and head stay dense
    assert (reloaded.transformer.wte.weight != 0).all()


def test_nonzero_count_matches_model(tiny_tokenizer):
    model = tiny_model("opt")
    before = count_parameters(model)
    report = prune_model(model, tiny_tokenizer, PruneConfig(method="magnitude"), progress=False)
    after = report.model_parameters
    assert after["parameters"] == before["parameters"]
    # OPT's zero-initialised biases stay in the count of zeros; the targets add exactly theirs
    assert before["nonzero_parameters"] - after["nonzero_parameters"] == report.targets["zeros"]
    assert after == count_parameters(model)


def test_interrupted_save_leaves_no_complete_looking_output(tmp_path, tiny_tokenizer, monkeypatch):
    from shears.prune import run as prune_run

    model = tiny_model_for(tiny_tokenizer, "llama")
    cfg = PruneConfig(output_dir=str(tmp_path / "out"), method="magnitude")
    report = prune_model(model, tiny_tokenizer, cfg, progress=False)

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(prune_run, "plot_sparsity", killed)  # dies after the weights were written
    with pytest.raises(KeyboardInterrupt):
        save_pruned(model, tiny_tokenizer, report, cfg)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    save_pruned(model, tiny_tokenizer, report, cfg)
    assert (tmp_path / "out" / PRUNE_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
