"""The VQA/EvalAI answer normalisation, case by case (expected values follow vqaEval.py)."""

import pytest

from coin.scoring.normalize import normalize_answer

CASES = [
    # case and whitespace
    ("Yes", "yes"),
    ("  yes  ", "yes"),
    ("multiple   spaces here", "multiple spaces here"),
    ("hello\nworld", "hello world"),
    ("tab\there", "tab here"),
    ("", ""),
    ("   ", ""),
    # number words become digits (only zero..ten, as in the original table)
    ("Two", "2"),
    ("two dogs", "2 dogs"),
    ("ONE", "1"),
    ("one two three", "1 2 3"),
    ("none", "0"),
    ("zero", "0"),
    ("ten", "10"),
    ("eleven", "eleven"),
    # articles dropped
    ("a dog", "dog"),
    ("the cat", "cat"),
    ("an apple", "apple"),
    ("The Big Cat", "big cat"),
    ("A", ""),
    ("theater", "theater"),
    # periods: kept before a digit, removed otherwise
    ("3.5", "3.5"),
    ("3.14159", "3.14159"),
    (".5", ".5"),
    ("3.5.", "3.5"),
    ("2.", "2"),
    ("yes.", "yes"),
    ("version 2.0.", "version 2.0"),
    ("1.5 m.", "1.5 m"),
    ("Mr. Smith", "mr smith"),
    ("U.S.A.", "usa"),
    # commas: digit-comma-digit anywhere deletes every mark
    ("1,000", "1000"),
    ("1,000 people", "1000 people"),
    ("2,5", "25"),
    ("red, white", "red white"),
    ("red,white", "red white"),
    # other punctuation: deleted next to a space, a space otherwise
    ("well-known", "well known"),
    ("well - known", "well known"),
    ("yes!", "yes"),
    ("what?", "what"),
    ("(yes)", "yes"),
    ('"quoted"', "quoted"),
    ("left/right", "left right"),
    ("x=y", "x y"),
    ("no;", "no"),
    ("Yes, it is", "yes it is"),
    ("[0.1, 0.2]", "0.1 0.2"),
    # not punctuation in the original: colon, apostrophe, percent, dollar, hash
    ("10:30", "10:30"),
    ("50%", "50%"),
    ("$5", "$5"),
    ("#1", "#1"),
    ("a man's hat", "man's hat"),
    # contractions restored
    ("dont", "don't"),
    ("Dont know", "don't know"),
    ("don't", "don't"),
    ("isnt it", "isn't it"),
    ("cant", "can't"),
    ("whats", "what's"),
    ("oclock", "o'clock"),
    ("hes", "he's"),
    ("yall", "y'all"),
    ("im", "im"),  # the original's key is "Im", which never matches after lower-casing
    # all together
    ("The answer is two.", "answer is 2"),
    ("  It's a Dog!  ", "it's dog"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_enough_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_normalize_is_idempotent(text: str, expected: str) -> None:
    assert normalize_answer(expected) == expected


def test_memoised_result_is_stable() -> None:
    assert normalize_answer("Two Dogs.") == normalize_answer("Two Dogs.") == "2 dogs"


# ------------------------------------------------------- TextVQA's m4c processor

# (text, VQA rules, m4c EvalAIAnswerProcessor): each case is one where the two disagree
M4C_DISAGREES = [
    ("red,white", "red white", "redwhite"),  # m4c deletes commas before the punctuation pass
    ("dog's bone", "dog's bone", "dog 's bone"),  # m4c splits 's off its word
    ("It's", "it's", "it 's"),
    ("1,000-2", "10002", "1000 2"),  # digit-comma-digit: VQA deletes every mark, m4c only the commas
    ("who?why", "who why", "whowhy"),  # m4c deletes "?" outright
]


@pytest.mark.parametrize(("text", "vqa", "m4c"), M4C_DISAGREES)
def test_m4c_differs_from_the_vqa_rules(text: str, vqa: str, m4c: str) -> None:
    from coin.scoring.normalize import get_normalizer

    assert normalize_answer(text) == vqa
    assert get_normalizer("m4c")(text) == m4c


def test_m4c_agrees_elsewhere() -> None:
    from coin.scoring.normalize import normalize_m4c

    for text in ("The answer is two.", "Yes.", "a, b", "What?", "  Coca-Cola  "):
        assert normalize_m4c(text) == normalize_answer(text)
