"""``judge.protocol``: coin's deterministic judge (the default) and the original's as it ran (issue 28.10).

A loopback OpenAI-compatible server records every request body, so the test reads what each
protocol sends (system line, user text, temperature, top-p, repetition penalty, max tokens),
then checks how the paper protocol reads replies and rounds a task's score.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

pytest.importorskip("openai")

from helpers_server import LoopbackServer, completion  # noqa: E402

from coin.config import ConfigError  # noqa: E402
from coin.engine.judging import judge_run  # noqa: E402
from coin.scoring.judge import build_backend, cache_id, get_protocol, judge_config  # noqa: E402
from coin.scoring.judge.backends import _hf_sampling  # noqa: E402
from coin.scoring.judge.protocols import parse_paper  # noqa: E402

RECORD = {"question_id": "q1", "text": "<image>\nWhich animal is shown?\nA. cat\nB. dog\nAnswer with the option's "
                                        "letter from the given choices directly.", "answer": "B"}
RULE = ("We would like to request your feedback on the performance of an AI assistants in response to the user "
        "question displayed above.\nPlease rate the accuracy of its responses according to the ground truth answer "
        "displayed above. The assistant receives an overall score on a scale of 0 to 10, where a higher score "
        "indicates better overall performance.\nPlease output a single line containing only a values indicating "
        "the scores for the Assistant.")


class Recorder(LoopbackServer):
    """A loopback /v1/chat/completions that keeps each request body and replies from ``replies`` by answer."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.bodies: list[dict] = []
        lock = threading.Lock()

        def respond(body: dict, headers) -> tuple[int, dict]:
            with lock:
                self.bodies.append(body)
            user = body["messages"][-1]["content"]
            answer = user.split("[Assistant]\n", 1)[1].split("\n\n[End of Assistant]", 1)[0]
            return 200, completion(body["model"], replies.get(answer, "5"))

        super().__init__(respond)


@pytest.fixture
def recorder():
    r = Recorder({"cat": "7", "dog": "Score: 10", "bird": "8/10"})
    yield r
    r.close()


def _cfg(recorder: Recorder, **kw):
    return judge_config(backend="openai", model="judge-a", base_url=recorder.url, timeout=5.0, retries=0, **kw)


def _ask(cfg, record: dict, output: str) -> None:
    messages = get_protocol(cfg.protocol).messages(record, output, False, cfg.prompt_version)
    backend = build_backend(cfg)
    try:
        assert [r.text is not None for _, r in backend.ask([messages])] == [True]
    finally:
        backend.close()


def test_the_paper_protocol_sends_what_the_original_script_sent(recorder):
    """eval_GenealKnowledge.py: "You are a helpful assistant.", the user text with <image> removed and
    stripped, temperature 0.7, top-p 0.8, repetition penalty 1.05 (vLLM's extra body field), 20 tokens."""
    _ask(_cfg(recorder, protocol="paper"), RECORD, "dog")
    body = recorder.bodies[-1]
    assert body["messages"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        # create_prompt.py kept "<image>\n" in the question; the judge script removed the tag alone and stripped
        {"role": "user", "content": "[Context]\n[Question]\n\nWhich animal is shown?\nA. cat\nB. dog\n\n"
                                    "[Ground truth answer]\nB\n\n[End of ground truth answer]\n\n"
                                    f"[Assistant]\ndog\n\n[End of Assistant]\n\n[System]\n{RULE}"}]
    assert (body["temperature"], body["top_p"], body["repetition_penalty"], body["max_tokens"]) == (0.7, 0.8, 1.05, 20)

    _ask(_cfg(recorder), RECORD, "dog")  # the default: coin's prompt, greedy, judge.max_tokens
    body = recorder.bodies[-1]
    assert body["messages"][0]["content"] == ("You are a helpful and precise assistant for checking the quality of "
                                              "the answer.")
    assert body["messages"][1]["content"].endswith(f"[System]\n{RULE}\n\n")
    assert "[Question]\nWhich animal is shown?" in body["messages"][1]["content"]
    assert (body["temperature"], body["max_tokens"]) == (0.0, 16)
    assert "top_p" not in body and "repetition_penalty" not in body


def test_the_hf_backend_samples_as_the_paper_protocol_says():
    paper = _hf_sampling(judge_config(backend="hf", model="m", protocol="paper"))
    assert paper == {"max_new_tokens": 20, "do_sample": True, "temperature": 0.7, "top_p": 0.8,
                     "repetition_penalty": 1.05}
    assert _hf_sampling(judge_config(backend="hf", model="m")) == {"max_new_tokens": 16, "do_sample": False}


@pytest.mark.parametrize("reply, score, status", [
    ("7", 7.0, "ok"),
    (" 8\n", 8.0, "ok"),  # float() takes surrounding whitespace
    ("10", 10.0, "ok"),
    ("7.5", 7.5, "ok"),
    ("-1", -1.0, "ok"),  # <= 10: the script added it
    ("11", None, "out_of_range"),  # parsed, > 10: nothing added, no further reading
    ("Score: 10", 1.0, "ok"),  # the first digit 1-9: the bug SPEC section 3 names
    ("Rating: 7-8", 7.0, "ok"),
    ("8/10", 8.0, "ok"),
    ("11/10", None, "out_of_range"),
    (" 8/10", None, "unparsable"),  # " 8" is not numeric: the part before / is all it reads
    ("8.5/10", None, "unparsable"),
    ("Score: 0", None, "unparsable"),  # no digit 1-9
    ("0", 0.0, "ok"),
    ("The answer is wrong.", None, "unparsable"),
    ("nan", None, "unparsable"),
    ("-inf", None, "unparsable"),  # would have made the sum -inf
    ("\u00bd/10", None, "unparsable"),  # numeric to isnumeric, not to float: the script would have stopped
    (None, None, "unparsable"),
])
def test_paper_replies_are_read_as_evaluate_score_read_them(reply, score, status):
    p = parse_paper(reply)
    assert (p.score, p.status) == (score, status)


def _fake_run(root: Path, outputs: list[str]) -> Path:
    """A finished one-task run whose prediction rows carry their question and truth."""
    run = root / "run"
    pred = run / "stages" / "01-ImageNet" / "predictions"
    pred.mkdir(parents=True)
    (run / "stages" / "01-ImageNet" / "DONE").write_text("")
    rows = [{"question_id": f"q{k}", "output": out, "text": "What is it?\nAnswer with one word.", "answer": "cat",
             "score": float(out == "cat"), "tag": "correct" if out == "cat" else "wrong_content"}
            for k, out in enumerate(outputs)]
    (pred / "ImageNet.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "matrix.json").write_text(json.dumps({"tasks": ["ImageNet"], "matrix": [[None]], "method": "sequential"}))
    return run


def test_paper_task_scores_are_rounded_and_never_share_replies_with_coin(recorder, tmp_path):
    run = _fake_run(tmp_path, ["cat", "dog", "bird"])  # replies 7, "Score: 10", "8/10"
    quiet = dict(log=lambda *a: None)
    paper = judge_run(run, _cfg(recorder, protocol="paper"), **quiet)
    assert paper["matrix"] == [[53.0]]  # (7 + 1 + 8) / 30 x 100 = 53.33, rounded as evaluate_score.py did
    assert paper["judge"]["protocol"] == "paper" and paper["judge"]["max_tokens"] == 20
    assert len(recorder.bodies) == 3

    coin = judge_run(run, _cfg(recorder), **quiet)
    assert len(recorder.bodies) == 6  # every answer asked again: no paper reply is read under coin
    assert coin["matrix"][0][0] == pytest.approx(250 / 3)  # (7 + 10 + 8) / 30 x 100, strict parsing, unrounded
    assert (run / "judge" / "judge-a@paper" / "rc_matrix.json").is_file()
    assert (run / "judge" / "judge-a" / "rc_matrix.json").is_file()

    again = judge_run(run, _cfg(recorder, protocol="paper"), **quiet)
    assert len(recorder.bodies) == 6 and again["matrix"] == [[53.0]]  # the paper replies come from the cache
    assert cache_id(_cfg(recorder, protocol="paper")) != cache_id(_cfg(recorder))


def test_the_protocol_is_checked_with_the_config():
    with pytest.raises(ConfigError, match="Did you mean 'paper'"):
        judge_config(model="m", protocol="papr")
    with pytest.raises(ConfigError) as e:
        judge_config(model="m", protocol="paper", max_tokens=64)
    assert "judge.max_tokens: the paper protocol sends the original's 20 tokens" in str(e.value)
    assert judge_config(model="m", protocol="paper").folder_name == "m@paper"
    assert judge_config(model="m").protocol == "coin"  # the default
