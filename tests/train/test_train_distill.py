"""``shears train --distill``: the KD / hidden-state losses, a frozen teacher, only the adapter
trained, resume, the teacher found from the prune folder, and one-line errors."""

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).parent))
from nls_worker import PoisonAt, make_config, make_examples, make_model, make_tokenizer  # noqa: E402

from shears.adapters import ElasticLoraConfig, SpaceConfig, elastic_layers  # noqa: E402
from shears.artifacts import PRUNE_CONFIG  # noqa: E402
from shears.errors import ShearsError  # noqa: E402
from shears.train import train_nls  # noqa: E402
from shears.train.distill_loss import hidden_loss, kd_loss  # noqa: E402
from shears.train.run import run  # noqa: E402
from shears.train.teacher import teacher_spec  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _distill_config(out, **overrides):
    base = dict(distill=True, adapter=ElasticLoraConfig(alpha=16, dropout=0.0))
    return make_config(str(out), **{**base, **overrides})


# ---------------------------------------------------------------------------- the maths


def test_kd_loss_zero_for_equal_logits_and_only_on_ce_tokens():
    torch.manual_seed(0)
    z = torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, -100, 3, 4, 5], [-100, 1, 2, -100, -100]])
    assert kd_loss(z, z.clone(), labels, 2.0).abs().item() < 1e-6
    other = torch.randn(2, 5, 11)
    assert kd_loss(z, other, labels, 2.0).item() > 0.01
    # positions whose next label is -100 carry no loss: changing them changes nothing
    moved = other.clone()
    moved[0, 0] += 5.0  # predicts labels[0, 1] = -100
    moved[1, 3] -= 5.0  # predicts labels[1, 4] = -100
    moved[:, -1] += 5.0  # predicts nothing
    assert torch.allclose(kd_loss(z, moved, labels, 2.0), kd_loss(z, other, labels, 2.0))
    # T^2 * KL at T, by hand for one token
    t, s = torch.tensor([[[1.0, 0.0]] * 2]), torch.tensor([[[0.0, 1.0]] * 2])
    p, q = torch.softmax(t[0, 0] / 2, -1), torch.softmax(s[0, 0] / 2, -1)
    want = 4 * (p * (p.log() - q.log())).sum()
    assert torch.allclose(kd_loss(s, t, torch.tensor([[0, 1]]), 2.0), want)


def test_hidden_loss_is_normalised_per_block():
    torch.manual_seed(0)
    labels = torch.tensor([[0, 1, 2, 3]])
    ht = [torch.randn(1, 4, 8), 100 * torch.randn(1, 4, 8)]
    assert hidden_loss(ht, [h.clone() for h in ht], labels).item() == 0.0
    # each block at 10 % relative error counts the same, whatever its scale
    hs = [h * 1.1 for h in ht]
    assert torch.allclose(hidden_loss(hs, ht, labels), torch.tensor(2 * 0.01), atol=1e-5)


# ---------------------------------------------------------------------------- training


class Grads(TrainerCallback):
    """Names of the student parameters holding a gradient before each optimizer step."""

    def __init__(self):
        self.names: set[str] = set()

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.names |= {n for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("widths", [[8, 6, 4], [8]], ids=["nls", "lora"])
def test_distill_from_an_identical_teacher(tok, tmp_path, widths):
    """Teacher == student with a zero adapter: KD and hidden start at 0; only the adapter gets
    gradients; the teacher and the base stay bit-identical; the terms are logged and recorded."""
    student, teacher = make_model(tok), make_model(tok)
    base, before = _snapshot(student), _snapshot(teacher)
    grads = Grads()
    cfg = _distill_config(
        tmp_path / "out", max_steps=3, distill_hidden=1.0, space=SpaceConfig(widths=widths)
    )
    res = train_nls(student, tok, make_examples(), cfg, teacher=teacher, callbacks=[grads])
    logged = [h for h in json.loads((tmp_path / "out" / "trainer_state.json").read_text())[
        "log_history"] if "loss" in h]  # fmt: skip
    assert len(logged) == 3 and all({"ce", "kd", "hidden"} <= set(h) for h in logged)
    assert logged[0]["kd"] < 1e-4 and logged[0]["hidden"] < 1e-4
    assert logged[-1]["hidden"] > logged[0]["hidden"]  # the student moved away from the teacher
    first = logged[0]
    assert first["loss"] == pytest.approx(0.5 * first["ce"] + 0.5 * first["kd"], abs=2e-3)
    adapter = set(elastic_layers(student))
    assert grads.names and all(n.rsplit(".lora_", 1)[0] in adapter for n in grads.names)
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert not teacher.training
    for n, p in teacher.named_parameters():
        assert torch.equal(p, before[n]), n
    for n, p in student.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), n
    saved = json.loads((tmp_path / "out" / "train_results.json").read_text())["distill"]
    assert saved["weight"] == 0.5 and saved["temperature"] == 2.0 and saved["hidden_weight"] == 1.0
    assert saved["final"] == {k: logged[-1][k] for k in ("ce", "kd", "hidden")}
    assert res.distill == saved


def test_plain_training_records_no_distillation(tok, tmp_path):
    train_nls(make_model(tok), tok, make_examples(4), make_config(str(tmp_path), max_steps=1))
    assert "distill" not in json.loads((tmp_path / "train_results.json").read_text())


def test_distill_weight_changes_the_adapter(tok, tmp_path):
    """w = 0 trains like plain NLS (same adapter); w > 0 does not."""
    runs = {}
    for name, extra in (("plain", {}), ("w0", {"distill_weight": 0.0}), ("w1", {})):
        distill = name != "plain"
        cfg = _distill_config(tmp_path / name, max_steps=2, distill=distill, **extra)
        teacher = make_model(tok, seed=1) if distill else None
        train_nls(make_model(tok), tok, make_examples(), cfg, teacher=teacher)
        runs[name] = load_file(str(tmp_path / name / "adapter_model.safetensors"))
    for k in runs["plain"]:
        assert torch.allclose(runs["plain"][k], runs["w0"][k], atol=1e-6), k
    assert any(not torch.allclose(runs["plain"][k], runs["w1"][k]) for k in runs["plain"])


def test_distill_resume_gives_the_uninterrupted_adapter(tok, tmp_path):
    cfg = dict(max_steps=6, save_steps=2, distill_hidden=0.5)
    train_nls(
        make_model(tok), tok, make_examples(), _distill_config(tmp_path / "straight", **cfg),
        teacher=make_model(tok, seed=1),
    )  # fmt: skip
    with pytest.raises(ShearsError, match="checkpoint-4"):
        train_nls(
            make_model(tok), tok, make_examples(), _distill_config(tmp_path / "run", **cfg),
            teacher=make_model(tok, seed=1), callbacks=[PoisonAt(4)],
        )  # fmt: skip
    ckpt = tmp_path / "run" / "checkpoint-4"
    assert not any("teacher" in k for k in load_file(str(ckpt / "elastic_adapter.safetensors")))
    res = train_nls(
        make_model(tok), tok, make_examples(),
        _distill_config(tmp_path / "run", resume=True, **cfg), teacher=make_model(tok, seed=1),
    )  # fmt: skip
    assert res.resumed_from.endswith("checkpoint-4") and res.global_steps == 6
    got = load_file(str(tmp_path / "run" / "adapter_model.safetensors"))
    want = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-6), k


# ---------------------------------------------------------------------------- the teacher


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory, tok):
    d = tmp_path_factory.mktemp("dense")
    make_model(tok, seed=1).save_pretrained(d)
    tok.save_pretrained(d)
    (d / "data.json").write_text(json.dumps(make_examples(8)))
    return d


def test_teacher_from_the_prune_folder(dense_dir, tok, tmp_path):
    """The prune output's prune_config.json names the teacher (its resolved path first); the
    teacher loaded from it is the dense model."""
    pruned = tmp_path / "pruned"
    make_model(tok).save_pretrained(pruned)
    tok.save_pretrained(pruned)
    record = {"model": "gone/relative", "resolved": {"model": str(dense_dir)}}
    (pruned / PRUNE_CONFIG).write_text(json.dumps(record))
    assert teacher_spec(str(pruned), None) == str(dense_dir)
    assert teacher_spec(str(pruned), "other") == "other"
    cfg = _distill_config(
        tmp_path / "out", model=str(pruned), data=str(dense_dir / "data.json"), max_steps=1
    )
    res = run(cfg)
    assert res.distill["teacher"] == str(dense_dir) and res.distill["final"]["kd"] > 0


def test_distill_without_a_teacher_is_a_one_line_error(dense_dir, tmp_path):
    cfg = _distill_config(tmp_path / "out", model=str(dense_dir), data=str(dense_dir / "data.json"))
    with pytest.raises(ShearsError, match="--teacher") as exc:
        run(cfg)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"distill_weight": 1.5}, "--distill-weight must be in [0, 1]"),
        ({"distill_weight": -0.1}, "--distill-weight must be in [0, 1]"),
        ({"distill_temperature": 0.0}, "--distill-temperature must be > 0"),
        ({"distill_temperature": -1.0}, "--distill-temperature must be > 0"),
        ({"distill_hidden": -1.0}, "--distill-hidden must be >= 0"),
        ({"teacher_adapter": "x", "distill": False}, "--teacher-adapter needs --distill"),
    ],
)
def test_bad_distill_settings(tmp_path, extra, message):
    with pytest.raises(ShearsError) as exc:
        _distill_config(tmp_path, **extra)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_teacher_adapter_is_merged_into_the_teacher(dense_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from shears.train.teacher import load_teacher

    torch.manual_seed(0)
    peft = get_peft_model(
        AutoModelForCausalLM.from_pretrained(dense_dir),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    peft.save_pretrained(tmp_path / "ada")
    ids = torch.tensor([[1, 5, 9, 20]])
    with torch.no_grad():
        want = peft.eval()(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(dense_dir).eval()(input_ids=ids).logits
    teacher = load_teacher(str(dense_dir), str(tmp_path / "ada"), "fp32", "cpu")
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        got = teacher(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, plain, atol=1e-3)
    with pytest.raises(ShearsError, match="--teacher-adapter"):
        load_teacher(str(dense_dir), str(tmp_path), "fp32", "cpu")


def test_a_shears_train_output_is_a_teacher_adapter_at_its_maximal_sub_adapter(dense_dir, tmp_path):
    """A fixed-rank LoRA trained by ``shears train`` (what ``--baselines`` calls lora_dense) is a
    teacher adapter: merged at its maximal sub-adapter, the teacher computes what the dense model
    with that adapter computes."""
    from transformers import AutoModelForCausalLM

    from shears.adapters.io import SuperAdapter
    from shears.train.teacher import load_teacher

    lora = tmp_path / "lora"
    run(make_config(str(lora), model=str(dense_dir), data=str(dense_dir / "data.json"),
                    max_steps=2, space=SpaceConfig(widths=[4])))  # fmt: skip
    ids = torch.tensor([[1, 5, 9, 20]])
    model = AutoModelForCausalLM.from_pretrained(dense_dir).eval()
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        sup = SuperAdapter.load(model, lora, dropout=0.0)
        sup.space.apply(sup.layers, sup.space.maximal())
        want = model(input_ids=ids).logits
    teacher = load_teacher(str(dense_dir), str(lora), "fp32", "cpu")
    assert not elastic_layers(teacher)  # merged: plain linears again
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        got = teacher(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, plain, atol=1e-4)


def test_a_bad_teacher_adapter_fails_before_the_student_loads(dense_dir, tmp_path, monkeypatch):
    import shears.models

    def boom(*a, **k):
        raise AssertionError("a model was loaded before --teacher-adapter was checked")

    monkeypatch.setattr(shears.models, "load_model", boom)
    cfg = _distill_config(tmp_path / "out", model=str(dense_dir), teacher=str(dense_dir),
                          teacher_adapter=str(tmp_path), data=str(dense_dir / "data.json"))  # fmt: skip
    with pytest.raises(
        ShearsError, match="--teacher-adapter: .* is neither a Shears super-adapter"
    ) as exc:
        run(cfg)
    assert "\n" not in str(exc.value) and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- earlier records


def test_runs_recorded_before_distill_keep_their_digest_and_resume(tmp_path):
    """The settings added later (distillation, --nls-max-prob) at their defaults count as absent:
    the stage digest of a run recorded before them is unchanged and --resume accepts its
    train_config.json."""
    import hashlib

    from shears.artifacts import train_config_record
    from shears.config import added_defaults, to_dict
    from shears.pipeline.ledger import NEUTRAL_KEYS, stage_digest
    from shears.train.config import TrainConfig
    from shears.train.folder import _check_resume_config

    new = tuple(added_defaults(TrainConfig))  # the distillation settings, --nls-max-prob
    assert {"distill", "teacher", "teacher_adapter", "distill_weight", "distill_temperature",
            "distill_hidden", "nls_max_prob"} <= set(new)  # fmt: skip
    cfg = make_config(str(tmp_path))
    old = {k: v for k, v in to_dict(cfg).items() if k not in NEUTRAL_KEYS and k not in new}
    text = json.dumps({"settings": old, "upstream": ["u"]}, sort_keys=True, default=str)
    assert stage_digest(cfg, ["u"]) == hashlib.sha1(text.encode()).hexdigest()[:16]
    assert stage_digest(_distill_config(tmp_path), ["u"]) != stage_digest(cfg, ["u"])
    record = {k: v for k, v in train_config_record(cfg).items() if k not in new}
    (tmp_path / "train_config.json").write_text(json.dumps(record))
    _check_resume_config(tmp_path, cfg)  # accepted
    with pytest.raises(ShearsError, match="distill was False"):
        _check_resume_config(tmp_path, make_config(str(tmp_path), distill=True))


def test_run_baselines_distil_on_the_pruned_model_only():
    from shears.pipeline import load_run_config
    from shears.pipeline.plan import build_plan

    overrides = ["run_dir=runs/x", "baselines=true", "train.distill=true", "train.distill_hidden=1"]
    plan = build_plan(load_run_config(None, overrides))
    assert plan.train.distill and plan.train.distill_hidden == 1.0
    pruned, dense = plan.baseline_trains["lora_pruned"], plan.baseline_trains["lora_dense"]
    assert pruned.distill and pruned.space.widths == [pruned.adapter.r_max]
    assert not dense.distill


def test_run_distils_from_its_own_dense_lora_trained_first():
    """``train.teacher_adapter: lora_dense``: the run trains its dense LoRA baseline first and
    both distilling trainings (Shears and the sparse LoRA) read it as their teacher."""
    from shears.pipeline import load_run_config
    from shears.pipeline.plan import build_plan, plan_steps

    overrides = ["run_dir=runs/x", "baselines=true", "train.distill=true"]
    plan = build_plan(load_run_config(None, [*overrides, "train.teacher_adapter=lora_dense"]))
    dense_lora = str(Path("runs/x").resolve() / "baselines" / "lora_dense")
    assert plan.teacher_step == "train_lora_dense"
    assert Path(plan.train.teacher_adapter).resolve() == Path(dense_lora)
    assert plan.baseline_trains["lora_pruned"].teacher_adapter == plan.train.teacher_adapter
    assert plan.baseline_trains["lora_dense"].teacher_adapter is None
    names = [st.name for st in plan_steps(plan)]
    assert names.index("train_lora_dense") < names.index("train") < names.index("search")
    assert names.count("train_lora_dense") == 1
    # the teacher is part of the students' digests: a changed dense LoRA retrains them
    untuned = {
        st.name: st.digest for st in plan_steps(build_plan(load_run_config(None, overrides)))
    }
    tuned = {st.name: st.digest for st in plan_steps(plan)}
    assert tuned["train"] != untuned["train"]
    assert tuned["train_lora_dense"] == untuned["train_lora_dense"]


def test_run_tuned_teacher_without_baselines_is_one_clear_error():
    from shears.pipeline import load_run_config
    from shears.pipeline.plan import build_plan

    cfg = load_run_config(None, ["train.distill=true", "train.teacher_adapter=lora_dense"])
    with pytest.raises(ShearsError, match="set baselines: true") as exc:
        build_plan(cfg)
    assert "\n" not in str(exc.value)
