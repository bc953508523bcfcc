"""Knowledge versus format (coin.tasks.knowledge): content match and error tags on hand-written outputs."""

import pytest

from coin.tasks.knowledge import answer_spaces, content_score, judge_knowledge, knowledge_task
from coin.scoring.scorers import score_sample
from coin.data.sample import TestItem

T = TestItem.from_row  # a test record as the loader gives it

SPACES = answer_spaces({
    "GQA": ["large", "small", "left", "right", "red", "blue"],
    "VizWiz": ["yes", "no", "unanswerable", "red"],
    "ImageNet": ["goldfish", "tabby cat", "fire truck"],
    "ScienceQA": ["A", "B", "C"],
})
SQA = {"question_id": "1", "text": "Which is a mammal?\nA. goldfish\nB. tabby cat\nC. red rock\nAnswer with the option's letter "
       "from the given choices directly.", "answer": "B"}


@pytest.mark.parametrize("output, expected", [
    ("large", 1.0),
    ("The cross is large.", 1.0),  # the right content in a sentence
    ("LARGE", 1.0),
    ("largest", 0.0),  # not the word
    ("small", 0.0),
    ("", 0.0),
])
def test_phrase_content(output, expected):
    assert content_score("phrase", output, T({"answer": "large"})) == expected


def test_ten_answers_give_soft_content():
    record = {"answer": "red", "answers": ["red"] * 2 + ["dark red"] * 1 + ["blue"] * 7}
    assert content_score("phrase", "It is red.", T(record)) == pytest.approx(2 / 3)  # "red" twice; "dark red" absent
    assert content_score("phrase", "dark red", T(record)) == 1.0  # both "red" and "dark red" are in it
    assert content_score("phrase", "blue", T(record)) == 1.0


@pytest.mark.parametrize("output, expected", [
    ("B", 1.0),
    ("The answer is (B).", 1.0),
    ("tabby cat", 1.0),  # the option's text instead of its letter: right content
    ("It is the tabby cat, not the goldfish.", 0.0),  # names two options
    ("A", 0.0),
    ("goldfish", 0.0),
])
def test_letter_content(output, expected):
    assert content_score("letter", output, T(SQA)) == expected


def test_box_content():
    record = {"answer": "[0.1, 0.1, 0.5, 0.5]", "answer_bbox": "[0.1, 0.1, 0.5, 0.5]"}
    assert content_score("box", "The box is at 0.1, 0.12, 0.5 and 0.5.", T(record)) == 1.0
    assert content_score("box", "[0.6, 0.6, 0.9, 0.9]", T(record)) == 0.0
    assert content_score("box", "[0.5, 0.5, 0.1, 0.1]", T(record)) == 0.0  # inverted
    assert content_score("box", "top left", T(record)) == 0.0


@pytest.mark.parametrize("task, form, output, record, paper, tag", [
    ("GQA", "phrase", "large", {"answer": "large"}, 1.0, "correct"),
    ("GQA", "phrase", "The cross is large.", {"answer": "large"}, 0.0, "format"),
    ("ImageNet", "class", "yes", {"answer": "goldfish"}, 0.0, "confusion"),  # VizWiz's answer to ImageNet
    ("ImageNet", "class", "tabby cat", {"answer": "goldfish"}, 0.0, "content"),  # a wrong class
    ("GQA", "phrase", "red", {"answer": "blue"}, 0.0, "content"),  # in its own space and another's: own kind
    ("GQA", "phrase", "yes", {"answer": "blue"}, 0.0, "confusion"),
    ("GQA", "phrase", "", {"answer": "blue"}, 0.0, "other"),
    ("GQA", "phrase", "zebra crossing", {"answer": "blue"}, 0.0, "other"),  # no task's answer
    ("ScienceQA", "letter", "C", SQA, 0.0, "content"),  # a wrong letter
    ("ScienceQA", "letter", "large", SQA, 0.0, "confusion"),  # GQA's answer to a multiple-choice question
    ("ScienceQA", "letter", "tabby cat", SQA, 0.0, "format"),
])
def test_tags(task, form, output, record, paper, tag):
    assert judge_knowledge(task, form, output, T(record), paper, SPACES).tag == tag


def test_format_errors_of_the_paper_scorer_are_knowledge_kept():
    """A sentence around the right phrase fails the paper's exact match but keeps the knowledge."""
    record = {"question_id": "q", "answer": "large", "text": "How big is the cross?"}
    paper = score_sample("exact", "The cross is large.", record).score
    assert paper == 0.0
    k = judge_knowledge("GQA", "phrase", "The cross is large.", T(record), paper, SPACES)
    assert (k.score, k.tag) == (1.0, "format")


def test_task_knowledge_counts_and_score():
    records = [{"question_id": str(i), "answer": a} for i, a in enumerate(["large", "small", "left", "red"])]
    outputs = {"0": "large", "1": "It is small.", "2": "yes", "3": ""}
    paper = {"0": 1.0, "1": 0.0, "2": 0.0, "3": 0.0}
    out = knowledge_task("GQA", "phrase", outputs, records, paper, SPACES)
    assert out["score"] == 50.0 and out["n"] == 4
    assert out["tags"] == {"correct": 1, "format": 1, "confusion": 1, "content": 0, "other": 1}
