"""The model card and export_results.json state the right numbers for a hand-made case."""

from __future__ import annotations

import json

from export_helpers import make_super_adapter

from shears.adapters.config import ElasticLoraConfig, SpaceConfig
from shears.export import ExportConfig, run_export
from shears.export.report import parameter_summary


def test_card_numbers_hand_made(tmp_path, tiny_tokenizer):
    # tiny LLaMA: hidden 32, 2 layers, 4 heads of 8, 2 KV heads, MLP 64, vocab 128, untied head.
    # per layer: q 32*32 + k 32*16 + v 32*16 + o 32*32 + gate/up 32*64 * 2 + down 64*32 = 9216
    # linear weights, + 2 norms of 32 = 9280; model: 2 * 9280 + embed 4096 + head 4096 + norm 32.
    total = 2 * 9280 + 4096 + 4096 + 32
    assert total == 26_784
    zeros = 2 * 9216 // 2  # every block linear has exactly half of each row zeroed
    nonzero = total - zeros  # 17,568
    adapter_cfg = ElasticLoraConfig(targets=["q_proj", "v_proj"], alpha=8.0)
    space_cfg = SpaceConfig(groups=[], widths=[4, 2])
    base, adapter, space = make_super_adapter(
        tmp_path, tiny_tokenizer, adapter_cfg=adapter_cfg, space_cfg=space_cfg
    )
    config = {
        "0.self_attn.q_proj": 4,
        "0.self_attn.v_proj": 2,
        "1.self_attn.q_proj": 2,
        "1.self_attn.v_proj": 4,
    }
    # sub-adapter: r * (in + out): q is 32 -> 32, v is 32 -> 16
    adapter_params = 4 * 64 + 2 * 48 + 2 * 64 + 4 * 48  # 672
    lora_rmax = 4 * 64 * 2 + 4 * 48 * 2  # 896
    shears_nz = nonzero + adapter_params  # 18,240
    dense = total + lora_rmax  # 27,680
    ratio = dense / shears_nz  # 1.5175...

    search = tmp_path / "search"
    search.mkdir()
    (search / "search_results.json").write_text(
        json.dumps(
            {
                "algorithm": "hill_climbing",
                "objective": "answer_loss",
                "evaluated": [{}, {}, {}],
                "best": {"config": config, "score": 1.234},
            }
        )
    )
    (adapter / "eval_results.json").write_text(
        json.dumps({"tasks": {"gsm": {"accuracy": 0.25, "count": 8}}, "mean_accuracy": 0.25})
    )
    out = tmp_path / "out"
    results = run_export(
        ExportConfig(adapter=str(adapter), output_dir=str(out), sub_adapter=str(search))
    )
    p = results.parameters
    assert p["base_parameters"] == total
    assert p["base_nonzero_parameters"] == nonzero
    assert p["sub_adapter_parameters"] == adapter_params
    assert p["lora_r_max_parameters"] == lora_rmax
    assert p["shears_nonzero_parameters"] == shears_nz
    assert p["dense_lora_nonzero_parameters"] == dense
    assert abs(p["nonzero_ratio_dense_over_shears"] - ratio) < 1e-12
    assert results.base_model.block_linear_sparsity == 0.5

    card = (out / "README.md").read_text()
    for text in (
        "26,784",
        "17,568",
        "18,240",
        "27,680",
        "**1.52x**",
        "adapter parameters: 672 (r_max everywhere: 896)",
        "decoder blocks: 50.00%",
        "| layer | `self_attn.q_proj` | `self_attn.v_proj` |",
        "| 0 | 4 | 2 |",
        "| 1 | 2 | 4 |",
        "hill_climbing",
        "best_score 1.234",
        "evaluations 3",
        "| tasks.gsm.accuracy | 0.25 |",
        "| mean_accuracy | 0.25 |",
        "Formula: ratio = (P_base + sum_i r_max",
        "PeftModel.from_pretrained",
    ):
        assert text in card, text
    saved = json.loads((out / "export_results.json").read_text())
    assert saved["parameters"] == p
    assert saved == json.loads(json.dumps(results.to_dict()))
    assert saved["sub_adapter"]["details"]["best_score"] == 1.234
    assert json.loads((out / "export_config.json").read_text())["sub_adapter"] == str(search)
    assert sorted(f.name for f in out.iterdir()) == [
        ".shears-output.json",
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "export_config.json",
        "export_results.json",
    ]


def test_parameter_summary_paper_scale():
    """The paper's headline, computed the same way, on LLaMA-7B-like numbers."""
    from shears.adapters.search_space import Group, SearchSpace

    # one module group standing for all q/k/v/up/down of LLaMA-7B (in + out summed): dims only
    space = SearchSpace(
        [Group("0.all", ["m"], [32, 24, 16])], {"m": (5_000_000, 3_000_000)}
    )  # r * 8e6 adapter params
    s = parameter_summary(6_738_415_616, 3_500_000_000, space, {"0.all": 24})
    assert s["sub_adapter_parameters"] == 24 * 8_000_000
    assert s["dense_lora_nonzero_parameters"] == 6_738_415_616 + 32 * 8_000_000
    assert 1.85 < s["nonzero_ratio_dense_over_shears"] < 1.95
