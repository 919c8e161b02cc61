"""The accuracy objectives wrap shears.evaluate; here: they switch the config, return an accuracy
in [0, 1] and are maximised through the evaluator."""

import torch

from conftest import active_config, tiny_model
from shears.adapters.config import ElasticLoraConfig, SpaceConfig
from shears.adapters.elastic_lora import inject_elastic_lora
from shears.adapters.search_space import SearchSpace
from shears.search import (
    CachedEvaluator,
    ChoiceAccuracyObjective,
    MathAccuracyObjective,
    run_algorithm,
)


def _setup(tok):
    model = tiny_model("llama", tokenizer=tok)
    cfg = ElasticLoraConfig(targets=["q_proj", "v_proj"])
    space = SearchSpace.build(model, cfg, SpaceConfig(groups=[], widths=[4, 2]))
    layers = inject_elastic_lora(model, space.modules, 4, cfg.alpha)
    with torch.no_grad():
        for lay in layers.values():
            lay.lora_B.normal_(0, 0.5)
    return model, layers, space


def test_math_and_choice_objectives(tiny_tokenizer):
    model, layers, space = _setup(tiny_tokenizer)
    math_ex = [{"instruction": f"What is {i}?", "input": "", "answer": str(i)} for i in range(3)]
    obj = MathAccuracyObjective(
        model, tiny_tokenizer, layers, space, math_ex, batch_size=3, max_new_tokens=4
    )
    ev = CachedEvaluator(space, obj, budget=2)
    acc = ev(space.minimal())
    assert 0.0 <= acc <= 1.0 and ev.maximize
    assert active_config(space, layers) == space.minimal()

    mc_ex = [
        {
            "instruction": "Pick one.",
            "input": "",
            "choices": ["The answer", "is 42"],
            "label": i % 2,
        }
        for i in range(4)
    ]
    obj = ChoiceAccuracyObjective(model, tiny_tokenizer, layers, space, mc_ex, batch_size=4)
    ev = CachedEvaluator(space, obj, budget=3)
    out = run_algorithm(ev, "hill-climbing", max_turns=1)
    assert 0.0 <= out.best.score <= 1.0
    assert out.best.score == max(e.score for e in ev.history)  # higher is better
