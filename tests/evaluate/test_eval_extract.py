import pytest

from shears.evaluate.extract import (
    clean_output,
    extract_answer_word,
    extract_letter,
    extract_number,
    numbers_match,
    parse_label_number,
)
from shears.evaluate.math import score_math_output


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is 42.", 42.0),
        ("She pays $1,234,567 in total", 1234567.0),
        ("a drop of -3.5 degrees", -3.5),
        ("first 3 then 4 and finally 17", 17.0),  # several numbers: the last wins
        ("no number here", None),
        ("", None),
        ("temperature went from -2 to -7", -7.0),
        ("It is 12. Then we stop.", 12.0),  # trailing dot allowed by the pattern
        ("0.5 of 10 is 5.00", 5.0),
        ("x = 3-4", -4.0),  # a minus right before a digit counts as a sign
        ("#### 72", 72.0),
        ("1,000,000 / 2 = 500,000", 500000.0),
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def test_numbers_match_tolerance_and_labels():
    assert numbers_match(3.0004, 3.0)
    assert not numbers_match(3.002, 3.0)
    assert not numbers_match(None, 3.0)
    assert parse_label_number("1,234") == 1234.0
    assert parse_label_number("so 6 + 4 = 10\n#### 10") == 10.0
    assert parse_label_number(7) == 7.0
    assert score_math_output("so it costs 1,000 dollars", "1000")["correct"]
    assert not score_math_output("so it costs 1,000 dollars, 5 each", "1000")["correct"]
    assert score_math_output("about -2.0", "-2")["correct"]
    assert not score_math_output("I do not know", "0")["correct"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is B.", "B"),
        ("Answer: (C) 12", "C"),
        ("BECAUSE the answer is D", "D"),  # letters inside words do not count
        ("a lowercase e", None),
        ("Fine, F is not an option, E is", "E"),
        ("nothing", None),
    ],
)
def test_extract_letter(text, expected):
    assert extract_letter(text) == expected


def test_extract_answer_word():
    words = ["answer1", "answer2", "answer10"]
    assert extract_answer_word("the correct answer is Answer2", words) == "answer2"
    assert extract_answer_word("answer10 is right", words) == "answer10"
    assert extract_answer_word("answer2 not answer1", words) == "answer2"  # first in the text
    assert extract_answer_word("no idea", words) is None
    assert extract_answer_word("it is true.", ["true", "false"]) == "true"
    assert extract_answer_word("untrue", ["true", "false"]) is None


def test_clean_output_cuts_new_alpaca_section():
    assert clean_output(" 42\n### Instruction:\nWhat is 7?", "alpaca") == "42"
    assert clean_output("### Instruction: 5", "alpaca") == ""
    assert clean_output("42\n### x", "chat") == "42\n### x"
