"""Search space: the paper's grouping, configurable groups/widths (also from YAML/JSON),
reproducible sampling from (seed, step), config validation and clear errors."""

import json

import pytest
import torch

from conftest import active_config, tiny_model
from shears.adapters import ElasticLoraConfig, SearchSpace, SpaceConfig, elastic_layers
from shears.adapters.config import ADAPTER_KEYS, fit_r_max, read_adapter_file
from shears.adapters.elastic_lora import inject_elastic_lora
from shears.errors import ShearsError


def configs(**kw) -> tuple[ElasticLoraConfig, SpaceConfig]:
    """Both configs from one mapping of their keys (as a ``--space-config`` file holds them)."""
    adapter = ElasticLoraConfig(**{k: kw.pop(k) for k in ADAPTER_KEYS if k in kw})
    space = SpaceConfig(**kw)
    return fit_r_max(adapter, space), space


def build(model, **kw) -> SearchSpace:
    return SearchSpace.build(model, *configs(**kw))


def test_default_grouping_is_the_papers():
    space = build(tiny_model("llama"))
    assert [g.name for g in space.groups[:3]] == [
        "0.q_proj+k_proj+v_proj",
        "0.up_proj",
        "0.down_proj",
    ]
    assert len(space.groups) == 6 and space.r_max == 32
    assert space.groups[0].modules == [f"model.layers.0.self_attn.{p}_proj" for p in "qkv"]
    assert set(space.heuristic().values()) == {24}
    assert set(space.maximal().values()) == {32} and set(space.minimal().values()) == {16}
    assert space.named_config("heuristic") == space.heuristic()


def test_heuristic_is_middle_width():
    space = build(tiny_model("llama"), widths=[16, 12, 8, 4])
    assert set(space.heuristic().values()) == {12}  # widths[(4 - 1) // 2]


def test_per_module_groups_and_other_targets():
    space = build(
        tiny_model("llama"), targets=["q_proj", "v_proj", "o_proj"], groups=[], widths=[8, 4]
    )
    assert len(space.groups) == 6 and all(len(g.modules) == 1 for g in space.groups)
    assert space.groups[0].name == "0.self_attn.q_proj"


def test_space_config_from_yaml_and_json(tmp_path):
    (tmp_path / "s.yaml").write_text(
        "space:\n  targets: [q_proj, v_proj, down_proj]\n  groups: [[q_proj, v_proj]]\n"
        "  widths: [16, 8]\n  alpha: 32\n"
    )
    sections = read_adapter_file(tmp_path / "s.yaml")
    adapter, cfg = configs(**sections["adapter"], **sections["space"])
    assert cfg.widths == [16, 8] and adapter.r_max == 16 and adapter.alpha == 32.0
    space = SearchSpace.build(tiny_model("llama"), adapter, cfg)
    assert [g.name for g in space.groups[:2]] == ["0.q_proj+v_proj", "0.mlp.down_proj"]
    (tmp_path / "s.json").write_text(json.dumps({"widths": [4, 2], "groups": []}))
    assert read_adapter_file(tmp_path / "s.json")["space"]["widths"] == [4, 2]
    (tmp_path / "bad.json").write_text(json.dumps({"widths": [4, 2], "colour": "red"}))
    with pytest.raises(ShearsError, match="unknown config key 'space.colour'"):
        read_adapter_file(tmp_path / "bad.json")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"widths": [16, 32, 24]}, "sorted high to low"),
        ({"widths": []}, "widths is empty"),
        ({"widths": [32, 24, 24]}, "unique"),
        ({"widths": [32, 0]}, "positive"),
        ({"widths": [48, 32], "r_max": 32}, "48 > r_max 32"),
        ({"widths": [24, 16], "r_max": 32}, "first width must equal r_max"),
        ({"targets": []}, "targets is empty"),
        ({"groups": [[]]}, "group in 'groups' is empty"),
        ({"alpha": 0}, "alpha"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_space_config(kwargs, message):
    with pytest.raises(ShearsError, match=message):
        configs(**kwargs)


def test_group_matching_no_module_is_an_error():
    with pytest.raises(ShearsError, match=r"group \['gate_proj'\] matches no target module"):
        build(tiny_model("llama"), groups=[["q_proj", "k_proj", "v_proj"], ["gate_proj"]])
    with pytest.raises(ShearsError, match="'nope_proj' matches no linear layer"):
        build(tiny_model("llama"), targets=["nope_proj"])


def test_sampling_is_a_function_of_seed_and_step():
    space = build(tiny_model("llama"))
    a = [space.sample(7, s) for s in range(40)]
    torch.manual_seed(123)  # global RNG state must not matter
    torch.rand(5)
    b = [space.sample(7, s) for s in range(40)]
    assert a == b
    assert a != [space.sample(8, s) for s in range(40)]
    assert len({json.dumps(c, sort_keys=True) for c in a}) > 30  # varies step to step
    seen = {r for c in a for r in c.values()}
    assert seen == {32, 24, 16}
    for c in a:
        assert space.validate(c) == c
    # roughly uniform and independent per group
    counts = [
        sum(c[g.name] == 16 for c in (space.sample(1, s) for s in range(300)))
        for g in space.groups[:2]
    ]
    assert all(60 < n < 140 for n in counts)


def test_max_prob_mixes_in_the_maximal_sub_adapter_and_keeps_the_uniform_draws():
    """``max_prob`` P: a step is the maximal sub-adapter with probability P; the other steps
    are exactly the uniform draws of P = 0 (a run at P = 0 samples as before the option)."""
    space = build(tiny_model("llama"))
    uniform = [space.sample(3, s) for s in range(400)]
    assert [space.sample(3, s, 0.0) for s in range(400)] == uniform
    assert all(space.sample(3, s, 1.0) == space.maximal() for s in range(20))
    mixed = [space.sample(3, s, 0.5) for s in range(400)]
    n_max = sum(c == space.maximal() for c in mixed)
    assert 150 < n_max < 250  # binomial(400, 0.5 + a tiny chance of a uniform maximal)
    assert all(m == u for m, u in zip(mixed, uniform, strict=True) if m != space.maximal())
    assert mixed == [space.sample(3, s, 0.5) for s in range(400)]  # a function of (seed, step)


def test_validate_errors():
    space = build(tiny_model("llama"))
    cfg = space.heuristic()
    with pytest.raises(ShearsError, match="unknown group"):
        space.validate({**cfg, "9.up_proj": 32})
    cfg.pop("0.up_proj")
    with pytest.raises(ShearsError, match="misses group '0.up_proj'"):
        space.validate(cfg)
    with pytest.raises(ShearsError, match=r"rank 20; allowed: \[32, 24, 16\]"):
        space.validate({**space.heuristic(), "0.up_proj": 20})


def test_apply_active_config_and_parameter_count(tmp_path):
    model = tiny_model("llama")
    space = build(model, widths=[8, 4])
    layers = inject_elastic_lora(model, space.modules, 8, 16.0)
    cfg = space.sample(0, 5)
    space.apply(layers, cfg)
    assert active_config(space, elastic_layers(model)) == cfg
    # q,k,v: (32 -> 32, 32 -> 16, 32 -> 16); up 32 -> 64; down 64 -> 32, two blocks
    expect = 2 * (8 * (64 + 48 + 48) + 8 * 96 + 8 * 96)
    assert space.adapter_parameters(space.maximal()) == expect
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expect
    space.save(tmp_path / "space.json")
    again = SearchSpace.load(tmp_path / "space.json")
    assert again.to_dict() == space.to_dict()
