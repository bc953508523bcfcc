"""Per-sample scorers and the task score: parsers, soft accuracy, id matching, tags."""

from __future__ import annotations

import itertools
import random

import pytest

from coin.scoring.scorers import (
    SCORERS,
    TAGS,
    Scored,
    box_iou,
    format_error_share,
    parse_box,
    score_sample,
    score_task,
)
from coin.registry import UnknownNameError


def test_registered_names() -> None:
    builtin = {"vqa", "exact", "substring", "letter", "classification", "grounding", "grounding_minigpt"}
    benchmarks = {"caption", "submission", "ai2d", "contains", "sci", "fin", "ocrbench", "mathvista"}  # UCIT, MLLM-CL
    assert set(SCORERS.names()) == builtin | benchmarks


def test_unknown_scorer_suggests_the_nearest_name() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'vqa'"):
        score_sample("vqq", "yes", {"answer": "yes"})


# ------------------------------------------------------------------------ letter

SQA = {
    "question_id": "sqa-1",
    "image": "x.png",
    "text": "Which animal is shown?\nA. cat\nB. blue car\nC. dog\nD. bird\n"
    "Answer with the option's letter from the given choices directly.",
    "answer": "B",
}

LETTER_CASES = [
    # (output, parsed, tag)
    ("B", "B", "correct"),
    ("b", "B", "correct"),
    ("B.", "B", "correct"),
    ("(B)", "B", "correct"),
    ("B:", "B", "correct"),
    ("  B \n", "B", "correct"),
    ("B) blue", "B", "correct"),
    ("B. blue car", "B", "correct"),
    ("(B) blue car", "B", "correct"),
    ("The answer is C", "C", "wrong_content"),
    ("The answer is C.", "C", "wrong_content"),
    ("Answer: B", "B", "correct"),
    ("answer: (b)", "B", "correct"),
    ("the answer is b.", "B", "correct"),
    ("The correct option is D", "D", "wrong_content"),
    ("Option B is correct", "B", "correct"),
    ("The answer is A because cats purr", "A", "wrong_content"),
    ("I think it is (B).", "B", "correct"),
    ("I think B.", "B", "correct"),
    ("A", "A", "wrong_content"),
    ("a", "A", "wrong_content"),
    # the article is never option A
    ("a cat", "A", "wrong_format"),  # it is option A's *text*, not the letter
    ("It shows a tiny animal", None, "unparsable"),
    ("A small animal sits here", None, "unparsable"),
    ("the answer is a cat sitting", None, "unparsable"),
    ("I think so", None, "unparsable"),
    # option text instead of the letter
    ("blue car", "B", "wrong_format"),
    ("Blue car.", "B", "wrong_format"),
    ("dog", "C", "wrong_format"),
    # nothing recognisable
    ("", None, "unparsable"),
    ("unicorn", None, "unparsable"),
    # a letter that is none of the record's options is no answer: a format error
    ("E", None, "unparsable"),
    ("(E)", None, "unparsable"),
    ("The answer is E.", None, "unparsable"),
    ("Option E is not it; the answer is B", "B", "correct"),
    # a cue word inside another word is no cue: "choices." is not option S
    ("None of the choices.", None, "unparsable"),
    ("None of the options", None, "unparsable"),
]


@pytest.mark.parametrize(("output", "parsed", "tag"), LETTER_CASES)
def test_letter_parser(output: str, parsed: str | None, tag: str) -> None:
    s = score_sample("letter", output, SQA)
    assert (s.parsed, s.tag) == (parsed, tag)
    assert s.score == (1.0 if tag == "correct" else 0.0)


def test_letter_cases_are_enough() -> None:
    assert len(LETTER_CASES) >= 20


def test_letter_answer_given_as_option_text() -> None:
    record = dict(SQA, answer="blue car")
    assert score_sample("letter", "B", record) == Scored("B", 1.0, "correct")


def test_letter_without_option_lines_accepts_any_capital() -> None:
    record = {"question_id": 1, "text": "Pick one.", "answer": "C"}
    assert score_sample("letter", "I pick C.", record).tag == "correct"


# -------------------------------------------------------------------------- boxes

BOX_CASES = [
    ("[0.1, 0.2, 0.5, 0.6]", (0.1, 0.2, 0.5, 0.6)),
    ("[0.10,0.20,0.50,0.60]", (0.1, 0.2, 0.5, 0.6)),
    ("0.1 0.2 0.5 0.6", (0.1, 0.2, 0.5, 0.6)),
    ("0.1, 0.2, 0.5, 0.6", (0.1, 0.2, 0.5, 0.6)),
    ("(0.1, 0.2, 0.5, 0.6)", (0.1, 0.2, 0.5, 0.6)),
    ("[0.1, 0.2, 0.5, 0.6", (0.1, 0.2, 0.5, 0.6)),  # truncated: y2 stays 0.6
    ("The box is [0.1, 0.2, 0.5, 0.6].", (0.1, 0.2, 0.5, 0.6)),
    ("[10, 20, 50, 60]", (10.0, 20.0, 50.0, 60.0)),
    ("[.5, .25, 1, 1.]", (0.5, 0.25, 1.0, 1.0)),
    ("region 2: [0.1, 0.2, 0.5, 0.6]", (0.1, 0.2, 0.5, 0.6)),  # the bracketed four win
    ("[0.1, 0.2, 0.5, 0.6] and [0.3, 0.3, 0.4, 0.4]", (0.1, 0.2, 0.5, 0.6)),
    ("[0.1, 0.2, 0.5, 0.6, 0.7]", (0.1, 0.2, 0.5, 0.6)),  # more than four: the first four
    ("x1=0.1 y1=0.2 x2=0.5 y2=0.6", (0.1, 0.2, 0.5, 0.6)),
    ("[0.1, 0.2, 0.5]", None),
    ("[0.1, 0.2, 0.5", None),
    ("", None),
    ("a dog on the left", None),
]


@pytest.mark.parametrize(("text", "box"), BOX_CASES)
def test_parse_box(text: str, box: tuple | None) -> None:
    got = parse_box(text)
    if box is None:
        assert got is None
    else:
        assert got == pytest.approx(box)


def test_box_cases_are_enough() -> None:
    assert len(BOX_CASES) >= 15


@pytest.mark.parametrize(
    ("a", "b", "iou"),
    [
        ((0, 0, 1, 1), (0, 0, 1, 1), 1.0),
        ((0, 0, 0.5, 0.5), (0.5, 0.5, 1, 1), 0.0),  # touching corners
        ((0, 0, 0.5, 1), (0.5, 0, 1, 1), 0.0),  # touching edges
        ((0, 0, 0.25, 0.5), (0, 0, 0.5, 0.5), 0.5),  # half of the truth
        ((0, 0, 0.5, 0.5), (0.25, 0, 0.75, 0.5), 1 / 3),  # overlap .125, union .375
        ((0.25, 0.25, 0.75, 0.75), (0, 0, 1, 1), 0.25),  # contained
        ((0.3, 0.3, 0.3, 0.6), (0, 0, 1, 1), 0.0),  # zero width
    ],
)
def test_box_iou(a: tuple, b: tuple, iou: float) -> None:
    assert box_iou(a, b) == pytest.approx(iou)


REC = {"question_id": 7, "text": "the dog", "answer": "[0.00, 0.00, 0.50, 0.50]",
       "answer_bbox": "[0.00, 0.00, 0.50, 0.50]", "size": [640, 480]}


@pytest.mark.parametrize(
    ("output", "score", "tag", "parsed"),
    [
        ("[0.00, 0.00, 0.50, 0.50]", 1.0, "correct", "[0.00, 0.00, 0.50, 0.50]"),
        # truncated: the original's slicing read y2 as "0." instead of 0.50
        ("[0.00, 0.00, 0.50, 0.50", 1.0, "correct", "[0.00, 0.00, 0.50, 0.50]"),
        ("It is at 0.05 0.0 0.5 0.5", 1.0, "correct", "[0.05, 0.00, 0.50, 0.50]"),
        # IoU exactly 0.5 is not above 0.5
        ("[0.00, 0.00, 0.25, 0.50]", 0.0, "wrong_content", "[0.00, 0.00, 0.25, 0.50]"),
        ("[0.60, 0.60, 0.90, 0.90]", 0.0, "wrong_content", "[0.60, 0.60, 0.90, 0.90]"),
        ("[0.50, 0.50, 0.00, 0.00]", 0.0, "wrong_format", "[0.50, 0.50, 0.00, 0.00]"),  # inverted
        ("[0, 0, 320, 240]", 0.0, "wrong_format", "[0.00, 0.00, 320.00, 240.00]"),  # pixels
        ("[0.00, 0.00, 0.50]", 0.0, "unparsable", None),
        ("the dog", 0.0, "unparsable", None),
    ],
)
def test_grounding(output: str, score: float, tag: str, parsed: str | None) -> None:
    assert score_sample("grounding", output, REC) == Scored(parsed, score, tag)


# ---------------------------------------------------------------------------- VQA

ANSWERS = ["2", "2", "two", "3", "3", "three", "3", "four", "4", "several"]
# normalised: "2" x3, "3" x4, "4" x2, "several" x1


@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        # m=3: the 3 matching annotators see 2 of 9 others -> 2/3; the 7 others see 3 -> 1
        ("two", (3 * (2 / 3) + 7 * 1) / 10),  # 0.9
        ("3", 1.0),  # m=4: everyone sees >= 3 matches
        ("Four.", (2 * (1 / 3) + 8 * (2 / 3)) / 10),  # m=2: 0.6
        ("several", (1 * 0 + 9 * (1 / 3)) / 10),  # m=1: 0.3
        ("5", 0.0),
    ],
)
def test_vqa_soft_accuracy_by_hand(pred: str, expected: float) -> None:
    rec = {"question_id": 1, "answer": "3", "answers": ANSWERS}
    s = score_sample("vqa", pred, rec)
    assert s.score == pytest.approx(expected)
    assert s.tag == ("correct" if expected > 0 else "wrong_content")


def _loo_reference(pred: str, answers: list[str]) -> float:
    """The literal leave-one-out definition, written the slow way."""
    accs = []
    for k in range(len(answers)):
        others = answers[:k] + answers[k + 1 :]
        accs.append(min(sum(a == pred for a in others) / 3, 1.0))
    return sum(accs) / len(accs)


def test_vqa_matches_leave_one_out_definition() -> None:
    rng = random.Random(0)
    vocab = ["yes", "no", "2", "red"]
    for _ in range(200):
        answers = [rng.choice(vocab) for _ in range(10)]
        pred = rng.choice(vocab)
        got = score_sample("vqa", pred, {"answer": answers[0], "answers": answers}).score
        assert got == pytest.approx(_loo_reference(pred, answers))


def test_vqa_other_answer_counts() -> None:
    two = {"answer": "cat", "answers": ["cat", "cat"]}
    five = {"answer": "cat", "answers": ["cat", "Cat.", "dog", "dog", "dog"]}
    assert score_sample("vqa", "cat", two).score == 1.0  # min(2 / min(3, 2), 1)
    assert score_sample("vqa", "cat", five).score == pytest.approx(2 / 3)
    assert score_sample("vqa", "dog", five).score == 1.0


def test_vqa_single_answer_and_tags() -> None:
    rec = {"question_id": 1, "answer": "Yes"}
    assert score_sample("vqa", "yes.", rec) == Scored("yes", 1.0, "correct")
    assert score_sample("vqa", "no", rec) == Scored("no", 0.0, "wrong_content")
    sentence = score_sample("vqa", "The answer is yes.", rec)
    assert sentence == Scored("answer is yes", 0.0, "wrong_format")
    assert score_sample("vqa", "", rec) == Scored(None, 0.0, "unparsable")
    assert score_sample("vqa", " . ", rec).tag == "unparsable"
    assert score_sample("vqa", "eyes", rec).tag == "wrong_content"  # whole words only


def test_exact_and_classification() -> None:
    rec = {"question_id": 1, "answer": "Golden Retriever"}
    for name in ("exact", "classification"):
        assert score_sample(name, "golden retriever.", rec).tag == "correct"
        assert score_sample(name, "golden", rec) == Scored("golden", 0.0, "wrong_content")
        assert score_sample(name, "It is a golden retriever", rec).tag == "wrong_format"
    # the original `pred in gt` counted "" (and "golden") as correct
    assert score_sample("classification", "", rec) == Scored(None, 0.0, "unparsable")


# --------------------------------------------------------------------- task score

RECORDS = [
    {"question_id": 10, "text": "q", "answer": "yes"},
    {"question_id": 11, "text": "q", "answer": "no"},
    {"question_id": 12, "text": "q", "answer": "2"},
    {"question_id": 13, "text": "q", "answer": "red"},
]
OUTPUTS = {"10": "Yes", "11": "yes", "12": "two", "13": "The answer is red"}


def test_score_task_by_id_not_position() -> None:
    base = score_task("exact", OUTPUTS, RECORDS)
    assert base.score == pytest.approx(50.0)
    assert base.n == 4
    assert base.tags == {
        "correct": 2, "wrong_content": 1, "wrong_format": 1, "unparsable": 0, "missing": 0
    }
    assert [s["question_id"] for s in base.samples] == [10, 11, 12, 13]
    assert base.samples[2] == {
        "question_id": 12, "output": "two", "parsed": "2", "score": 1.0, "tag": "correct"
    }
    for perm in itertools.permutations(OUTPUTS.items()):
        again = score_task("exact", dict(perm), RECORDS)
        assert (again.score, again.tags, again.samples) == (base.score, base.tags, base.samples)


def test_score_task_int_keys_match_too() -> None:
    outputs = {int(k): v for k, v in OUTPUTS.items()}
    assert score_task("exact", outputs, RECORDS).score == pytest.approx(50.0)


def test_score_task_missing_output_counts_as_zero() -> None:
    res = score_task("exact", {"10": "yes", "12": "2"}, RECORDS)
    assert res.n == 4
    assert res.score == pytest.approx(50.0)
    assert res.tags["missing"] == 2
    assert res.samples[1] == {
        "question_id": 11, "output": None, "parsed": None, "score": 0.0, "tag": "missing"
    }


def test_score_task_unknown_id_raises() -> None:
    with pytest.raises(ValueError, match="'99'"):
        score_task("exact", {**OUTPUTS, "99": "yes"}, RECORDS)


def test_score_task_duplicate_record_raises() -> None:
    with pytest.raises(ValueError, match="duplicate question_id '10'"):
        score_task("exact", {}, RECORDS + [RECORDS[0]])


def test_score_task_empty() -> None:
    res = score_task("vqa", {}, [])
    assert (res.score, res.n, res.samples) == (0.0, 0, [])


def test_tags_cover_every_outcome() -> None:
    assert TAGS == ("correct", "wrong_content", "wrong_format", "unparsable")
    res = score_task("exact", OUTPUTS, RECORDS)
    assert set(res.tags) == set(TAGS) | {"missing"}


def test_format_error_share() -> None:
    tags = {"correct": 5, "wrong_content": 2, "wrong_format": 1, "unparsable": 1}
    assert format_error_share(tags) == 0.5
    assert format_error_share({"correct": 5, "missing": 3}) is None
    assert format_error_share({"correct": 1, "wrong_content": 1, "missing": 9}) == 0.0
    assert format_error_share(score_task("exact", OUTPUTS, RECORDS).tags) == 0.5
