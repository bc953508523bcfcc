"""Knowledge versus format: was the right content in the answer, whatever its wording?

CoIN separates what a model *knows* from whether it still answers in the task's format;
the paper does it with an LLM judge. Where every task's answer space is known (CoIN-Synth,
and approximately any benchmark, from its training answers), it can be done by code: each
prediction is scored by *content*, and each error gets one tag.

Content match, per answer form (``TaskSpec.answer_form``):

- ``phrase`` / ``class``: a gold answer, VQA-normalised, appears in the normalised output as
  whole words ("The cross is large." holds "large"; "largest" does not). With ten answers
  (VQAv2, TextVQA) the content score is VQA's soft accuracy over the gold answers found,
  min(1, n / 3).
- ``letter``: the output names the right option, by its letter (read as the scorer reads
  letters, ``coin.scoring.parse.parse_letter``) or by the option's text as whole words, and
  names no other option's text.
- ``box``: four numbers anywhere in the output form a box with IoU > 0.5 with the answer box
  (``parse_box``).

Tags (one per prediction, from the paper score and the content):

- ``correct``: the paper protocol credited it;
- ``format``: the content is right but the paper protocol did not credit it (instruction
  following lost, knowledge kept);
- ``confusion``: the normalised output is an answer of *another* task's answer space and not
  of this task's ("yes" to an ImageNet question): the model answered the wrong task;
- ``content``: a well-formed wrong answer of the right kind (in this task's answer space, a
  wrong option letter, a wrong box);
- ``other``: none of these (empty, garbled, or an answer of no task).

``knowledge`` per prediction is the content score; a task's knowledge accuracy is its mean
x 100, and the knowledge matrix goes through the same metrics as the others. Pure functions;
no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from coin.scoring.normalize import normalize_answer
from coin.scoring.parse import box_iou, option_letters, parse_box, parse_letter
from coin.scoring.item import TestItem, as_item
from coin.scoring.scorers import TaskScore

__all__ = ["FORMS", "KNOWLEDGE_TAGS", "Knowledge", "answer_spaces", "content_score", "judge_knowledge",
           "knowledge_share", "knowledge_task", "score_knowledge"]

KNOWLEDGE_TAGS = ("correct", "format", "confusion", "content", "other")
FORMS = ("letter", "phrase", "class", "box")  # the answer forms whose content can be matched by code


@dataclass(frozen=True)
class Knowledge:
    """One prediction's content score in [0, 1] and its tag (``KNOWLEDGE_TAGS``)."""

    score: float
    tag: str


def _words(text: str) -> str:
    return f" {normalize_answer(text)} "


def _contains(output: str, answer: str) -> bool:
    answer = normalize_answer(answer)
    return bool(answer) and f" {answer} " in _words(output)


def _answer(record: TestItem) -> object:
    """The record's ``answer`` as released ("" when it has none)."""
    return record.answer if record.has("answer") else ""


def _gold(record: TestItem) -> list[str]:
    answers = record.answers
    if isinstance(answers, list) and answers:
        return [str(a) for a in answers]
    return [str(_answer(record))]


def content_score(form: str, output: str, record: TestItem) -> float:
    """The content score of ``output`` for ``record`` under answer form ``form`` (see the module doc)."""
    output = str(output or "")
    if form == "box":
        box = parse_box(output)
        truth = parse_box(str(record.answer_bbox or _answer(record)))
        ok = box is not None and truth is not None and box[2] >= box[0] and box[3] >= box[1]
        return 1.0 if ok and box_iou(box, truth) > 0.5 else 0.0
    if form == "letter":
        options = option_letters(record.text)
        truth, _ = parse_letter(str(_answer(record)), options)
        letter, _ = parse_letter(output, options)
        if truth is not None and letter == truth:
            return 1.0
        named = {k for k, text in options.items() if text and f" {text} " in _words(output)}
        return 1.0 if truth is not None and named == {truth} else 0.0
    gold = _gold(record)
    found = sum(_contains(output, g) for g in gold)
    if len(gold) >= 10:
        return min(1.0, found / 3.0)
    return 1.0 if found else 0.0


def answer_spaces(answers: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    """Per task, its answer space: the normalised training answers (``{task: answers}`` in)."""
    return {task: frozenset(a for a in (normalize_answer(str(x)) for x in xs) if a) for task, xs in answers.items()}


def judge_knowledge(task: str, form: str, output: str, record: TestItem, paper_score: float,
                    spaces: Mapping[str, frozenset[str]]) -> Knowledge:
    """The content score and tag of one prediction (``paper_score``: the paper protocol's score)."""
    score = content_score(form, output, record)
    if paper_score > 0:
        return Knowledge(max(score, paper_score), "correct")
    if score > 0:
        return Knowledge(score, "format")
    pred = normalize_answer(str(output or ""))
    own = spaces.get(task, frozenset())
    if pred and pred not in own and any(pred in space for t, space in spaces.items() if t != task):
        return Knowledge(0.0, "confusion")
    if form == "letter":
        options = option_letters(record.text)
        well_formed = parse_letter(str(output or ""), options)[0] is not None
    elif form == "box":
        well_formed = parse_box(str(output or "")) is not None
    else:
        well_formed = bool(pred) and (pred in own or not own)
    return Knowledge(0.0, "content" if well_formed else "other")


def knowledge_task(task: str, form: str, outputs: Mapping[str, str], records: Sequence[TestItem | Mapping],
                   paper_scores: Mapping[str, float], spaces: Mapping[str, frozenset[str]]) -> dict:
    """A task's knowledge accuracy (x 100) and tag counts, from outputs and paper scores by question id."""
    tags = dict.fromkeys(KNOWLEDGE_TAGS, 0)
    total = 0.0
    records = [as_item(r) for r in records]
    for record in records:
        qid = record.question_id
        k = judge_knowledge(task, form, outputs.get(qid, ""), record, float(paper_scores.get(qid, 0.0)), spaces)
        tags[k.tag] += 1
        total += k.score
    n = len(records)
    return {"score": 100.0 * total / n if n else 0.0, "n": n, "tags": tags}


def knowledge_share(tags: Mapping[str, int]) -> float | None:
    """Share of the errors whose content was right (``format``): instruction following lost, knowledge kept."""
    errors = sum(n for tag, n in tags.items() if tag != "correct")
    return tags.get("format", 0) / errors if errors else None


def score_knowledge(task: str, form: str, outputs: Mapping[str, str], records: Sequence[TestItem | Mapping],
                    paper: TaskScore, spaces: Mapping[str, frozenset[str]]) -> TaskScore | None:
    """The knowledge column of a task as a ``TaskScore`` (rows in ``records`` order, as the paper's).

    None for an answer form whose content code cannot match (``FORMS``: captions, free text).
    """
    if form not in FORMS or paper.score is None:  # no content rule, or an unscored task (no public answers)
        return None
    by_id = {str(k): v for k, v in outputs.items()}
    tags = dict.fromkeys(KNOWLEDGE_TAGS, 0)
    samples, total = [], 0.0
    records = [as_item(r) for r in records]
    for record, row in zip(records, paper.samples):
        qid = record.question_id
        k = judge_knowledge(task, form, by_id.get(qid, ""), record, float(row["score"]), spaces)
        tags[k.tag] += 1
        total += k.score
        samples.append({"question_id": record.question_id, "score": k.score, "tag": k.tag})
    n = len(records)
    return TaskScore(100.0 * total / n if n else 0.0, n, tags, samples)
