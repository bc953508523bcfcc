"""Answer token limits: sized from each task's training answers, overridable, and counted when reached."""

from __future__ import annotations

import json

import pytest

from coin.config import ConfigError
from coin.config_load import from_dict
from coin.benchmarks.load import BenchmarkData
from coin.engine.limits import answer_lengths, answer_limits, count_at_limit, margin
from coin.data.sample import Sample
from tinyvlm import tokenizer

TITLE = "The Fellowship of the Ring: Being the First Part of the Lord of the Rings by J. R. R. Tolkien"


def _train(task: str, answers: list[str]) -> list[Sample]:
    return [Sample(f"{task}-{k}", task, "/x.png", "Who wrote this book?", a) for k, a in enumerate(answers)]


def test_limits_come_from_the_longest_training_answer_plus_a_margin():
    tok = tokenizer()
    long_ = answer_lengths(tok, [TITLE])[0]
    assert long_ > 8  # the 8-token limit of before cut it
    train = {"OCR-VQA": _train("OCR-VQA", ["Penguin", TITLE]), "ScienceQA": _train("ScienceQA", ["A", "B"])}
    # a later turn of a multi-turn record counts too
    train["GQA"] = [Sample("g", "GQA", "/x.png", "q?", "no", turns=(("q2?", TITLE + " again"),))]
    limits = answer_limits(tok, train, ["OCR-VQA", "ScienceQA", "GQA", "VizWiz"])
    assert limits["OCR-VQA"] == long_ + margin(long_) > long_ + 2
    assert limits["ScienceQA"] == max(4, answer_lengths(tok, ["A"])[0] + 2)
    assert limits["GQA"] > limits["OCR-VQA"]
    assert limits["VizWiz"] == 8  # no training answers: the registry's value
    assert answer_limits(tok, train, ["OCR-VQA"], {"OCR-VQA": 5}) == {"OCR-VQA": 5}


def test_max_new_tokens_override_is_validated():
    assert from_dict({"eval": {"max_new_tokens": {"OCR-VQA": 64}}}).eval.max_new_tokens == {"OCR-VQA": 64}
    with pytest.raises(ConfigError) as e:
        from_dict({"eval": {"max_new_tokens": {"OCRVQA": 64, "GQA": 0}}})
    assert "eval.max_new_tokens: unknown task 'OCRVQA'" in str(e.value)
    assert "eval.max_new_tokens.GQA must be a positive integer, got 0" in str(e.value)


class _EchoVLM:
    """Greedy "generation" of the right answer, cut at ``max_new_tokens`` tokens as a model would."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.tokenizer, self.answers, self.limits = tokenizer(), answers, []

    def generate(self, chunk, max_new_tokens):
        self.limits.append(max_new_tokens)
        ids = self.tokenizer([" " + self.answers[s.id] for s in chunk], add_special_tokens=False)["input_ids"]
        return [self.tokenizer.decode(x[:max_new_tokens]).strip() for x in ids]


def test_a_long_answer_is_not_cut_and_the_stage_counts_answers_at_the_limit(tmp_path):
    from coin.engine.run import _fmt_scores, evaluate_stage

    test = [{"question_id": "q1", "task": "OCR-VQA", "image": "a.png", "image_path": "/a.png",
             "text": "Who wrote this book?\nAnswer the question using a single word or phrase.", "answer": TITLE},
            {"question_id": "q2", "task": "OCR-VQA", "image": "b.png", "image_path": "/b.png",
             "text": "Who wrote this?\nAnswer the question using a single word or phrase.", "answer": "Penguin"}]
    bench = BenchmarkData(tmp_path, tmp_path, {"OCR-VQA": _train("OCR-VQA", [TITLE, "Penguin"])}, {"OCR-VQA": test})
    vlm = _EchoVLM({"q1": TITLE, "q2": "Penguin"})
    limits = answer_limits(vlm.tokenizer, bench.train, ["OCR-VQA"])
    scores = evaluate_stage(vlm, bench, ["OCR-VQA"], tmp_path / "s1", 8, False, limits)
    assert vlm.limits == [limits["OCR-VQA"]]
    assert scores["OCR-VQA"]["score"] == 100.0  # the title came through whole
    assert scores["OCR-VQA"]["at_limit"] == 0 and scores["OCR-VQA"]["max_new_tokens"] == limits["OCR-VQA"]
    # an override too small for the title: the cut answer is counted, in scores.json and the log line
    vlm2 = _EchoVLM({"q1": TITLE, "q2": "Penguin"})
    short = answer_lengths(vlm2.tokenizer, ["Penguin"])[0] + 1
    scores = evaluate_stage(vlm2, bench, ["OCR-VQA"], tmp_path / "s2", 8, False, {"OCR-VQA": short})
    assert scores["OCR-VQA"]["score"] == 50.0 and scores["OCR-VQA"]["at_limit"] == 1
    assert json.loads((tmp_path / "s2" / "scores.json").read_text())["OCR-VQA"]["at_limit"] == 1
    assert _fmt_scores(scores, ["OCR-VQA"]) == "OCR-VQA 50.0 (1 at limit)"


def test_count_at_limit_counts_outputs_of_limit_tokens():
    tok = tokenizer()
    n = answer_lengths(tok, [TITLE])[0]
    assert count_at_limit(tok, [TITLE, "Penguin", None, ""], n) == 1
    assert count_at_limit(tok, [TITLE, "Penguin"], n + 1) == 0
