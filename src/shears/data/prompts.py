"""The one prompt module shared by training, evaluation and search, so formats always match."""

from __future__ import annotations

from shears.errors import ShearsError

PROMPT_STYLES = ("alpaca", "chat")

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


def check_style(style: str) -> None:
    if style not in PROMPT_STYLES:
        raise ShearsError(
            f"prompt style {style!r} is not known; allowed: {', '.join(PROMPT_STYLES)}"
        )


def format_prompt(instruction: str, input: str = "", style: str = "alpaca", tokenizer=None) -> str:  # noqa: A002
    """The text the model sees before its answer.

    ``alpaca``: the paper's (LLM-Adapters) Alpaca template. ``chat``: the tokenizer's chat template
    with one user turn and the generation prompt.
    """
    check_style(style)
    if style == "alpaca":
        if input:
            return ALPACA_WITH_INPUT.format(instruction=instruction, input=input)
        return ALPACA_NO_INPUT.format(instruction=instruction)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ShearsError(
            "prompt style 'chat' needs a tokenizer with a chat template; use 'alpaca'"
        )
    content = f"{instruction}\n\n{input}" if input else instruction
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
