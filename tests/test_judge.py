"""The Reasoning-Capability judge: prompt, parsing, cache, backends, ``judge_run`` and ``coin judge``.

The OpenAI-compatible backend talks to a scripted server on loopback that this file
starts (scores, a slow answer, a 500, a malformed body, an unparsable reply); the local
backend runs a tiny random causal LM built here. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("openai")

from coin.cli import main  # noqa: E402
from coin.config import ConfigError  # noqa: E402
from coin.scoring.judge import (  # noqa: E402
    BACKENDS, JudgeCache, JudgeConfig, PROMPT_VERSION, ParsedScore, agreement, build_backend, build_messages,
    cache_id, judge_config, parse_score, prompt_sha, spearman, truth_agreement,
)
from coin.engine.judging import JudgeError, judge_run, select_stages  # noqa: E402

ORDER = ["ImageNet", "Grounding"]
STAGES = {"00-zeroshot": ORDER, "01-ImageNet": ["ImageNet"], "02-Grounding": ORDER}
WRONG = {"ImageNet": "banana", "Grounding": "[0.00, 0.00, 0.01, 0.01]"}
SLOW_SECONDS = 1.5


# --------------------------------------------------------------------------- the scripted server


class ScriptedJudge:
    """A loopback /v1/chat/completions that grades by comparing the answer with the truth.

    ``judge-a`` replies "10" for an answer equal to the ground truth and "2" otherwise;
    ``judge-b`` replies "Score: 9" / "3/10". Special answers script the failure modes:
    ``slow`` (sleeps past the client timeout), ``flaky`` (a 500 on its first request),
    ``broken`` (a body that is not JSON), ``junk`` (an unparsable reply), ``huge`` ("11").
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (model, answer)
        self.auth: set[str] = set()
        self.slow_enabled = True
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = body["messages"][-1]["content"]
                answer = re.search(r"\[Assistant\]\n(.*?)\n\n\[End of Assistant\]", user, re.S).group(1)
                truth = re.search(r"\[Ground truth answer\]\n(.*?)\n\n\[End of ground truth", user, re.S).group(1)
                with outer.lock:
                    outer.requests.append((body["model"], answer))
                    outer.auth.add(self.headers.get("Authorization", ""))
                    seen = sum(1 for _, a in outer.requests if a == answer)
                assert body["temperature"] == 0
                if answer == "slow" and outer.slow_enabled:
                    time.sleep(SLOW_SECONDS)
                if answer == "flaky" and seen == 1:
                    return self._send(500, b'{"error": {"message": "scripted failure"}}')
                if answer == "broken":
                    return self._send(200, b"this is not json{")
                self._send(200, json.dumps(outer.completion(body["model"], answer, truth)).encode())

            def _send(self, code: int, data: bytes) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda *a: None
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def completion(model: str, answer: str, truth: str) -> dict:
        right = answer == truth
        text = {"junk": "I cannot rate this answer.", "huge": "11", "flaky": "Score: 6", "slow": "5"}.get(answer)
        if text is None:
            text = ("10" if right else "2") if model == "judge-a" else ("Score: 9" if right else "3/10")
        return {"id": "x", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}]}

    def count(self, answer: str | None = None) -> int:
        with self.lock:
            return sum(1 for _, a in self.requests if answer is None or a == answer)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    s = ScriptedJudge()
    yield s
    s.close()


def _cfg(server: ScriptedJudge, model: str = "judge-a", **kw):
    base = dict(backend="openai", model=model, base_url=server.url, timeout=0.5, retries=1, backoff=0.01,
                concurrency=4)
    return judge_config(**{**base, **kw})


# --------------------------------------------------------------------------- a fake run folder


def _truth(task: str, record) -> str:
    return str(record.answer_bbox if task == "Grounding" else record.answer)


@pytest.fixture(scope="module")
def run_template(tmp_path_factory) -> tuple[Path, dict]:
    """A run folder with hand-made predictions for 3 stages x 2 tasks of 6 CoIN-Synth samples.

    Sample i at stage s is right when i + s is even (else a wrong answer); tests overwrite
    single answers with the scripted ones.
    """
    from coin.config import dump_config
    from coin.config_load import from_dict
    from coin.benchmarks.load import load_benchmark

    cfg = from_dict({"seed": 0, "data": {"synth": {"n_train": 4, "n_test": 6}}, "tasks": {"order": ORDER}})
    run_dir = tmp_path_factory.mktemp("judge-runs") / "template"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    records = load_benchmark(cfg.data, ORDER, cfg.seed).test
    outputs = {(stage, task, i): _truth(task, r) if (i + s) % 2 == 0 else WRONG[task]
               for s, (stage, tasks) in enumerate(STAGES.items()) for task in tasks
               for i, r in enumerate(records[task])}
    _write_predictions(run_dir, records, outputs)
    return run_dir, {"records": records, "outputs": outputs}


def _write_predictions(run_dir: Path, records: dict, outputs: dict) -> None:
    """Predictions (scored by the real TA scorers), scores.json, DONE and matrix.json."""
    from coin.scoring.scorers import score_task
    from coin.metrics import summarize
    from coin.tasks import get_task

    matrix: list[list] = [[None, None], [None, None]]
    zero: list = [None, None]
    for stage, tasks in STAGES.items():
        d = run_dir / "stages" / stage
        for task in tasks:
            outs = {r.question_id: outputs[(stage, task, i)] for i, r in enumerate(records[task])
                    if outputs[(stage, task, i)] is not None}
            res = score_task(get_task(task).scorer, outs, records[task])
            (d / "predictions").mkdir(parents=True, exist_ok=True)
            (d / "predictions" / f"{task}.jsonl").write_text(
                "".join(json.dumps({"task": task, **s}) + "\n" for s in res.samples))
            if stage == "00-zeroshot":
                zero[ORDER.index(task)] = res.score
            else:
                matrix[int(stage[:2]) - 1][ORDER.index(task)] = res.score
        (d / "DONE").write_text("")
    (run_dir / "matrix.json").write_text(json.dumps({
        "tasks": ORDER, "matrix": matrix, "zero_shot": zero, "metrics": summarize(matrix, zero_shot=zero),
        "ci": None, "format_share": None, "seed": 0, "method": "sequential", "run_name": "fake", "cost": None}))


@pytest.fixture
def fake_run(run_template, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(run_template[0], run_dir)
    return run_dir


def _set_outputs(run_dir: Path, template: dict, changes: dict) -> None:
    _write_predictions(run_dir, template["records"], {**template["outputs"], **changes})


def _expected_cell(template: dict, stage: str, task: str, right: float = 10.0, wrong: float = 2.0) -> float:
    n = len(template["records"][task])
    total = sum(right if template["outputs"][(stage, task, i)] == _truth(task, r) else wrong
                for i, r in enumerate(template["records"][task]))
    return 100.0 * total / (10.0 * n)


# --------------------------------------------------------------------------- prompt and parser


def test_prompt_is_the_coin_prompt_exactly():
    record = {"text": "<image>\nWhich animal is shown?\nA. cat\nB. dog\nAnswer with the option's letter from the "
                      "given choices directly.", "answer": "B"}
    msgs = build_messages(record, "dog", grounding=False)
    assert msgs[0] == {"role": "system",
                       "content": "You are a helpful and precise assistant for checking the quality of the answer."}
    assert msgs[1]["role"] == "user"
    assert msgs[1]["content"] == (
        "[Context]\n[Question]\nWhich animal is shown?\nA. cat\nB. dog\n\n"
        "[Ground truth answer]\nB\n\n[End of ground truth answer]\n\n"
        "[Assistant]\ndog\n\n[End of Assistant]\n\n"
        "[System]\nWe would like to request your feedback on the performance of an AI assistants in response to "
        "the user question displayed above.\nPlease rate the accuracy of its responses according to the ground "
        "truth answer displayed above. The assistant receives an overall score on a scale of 0 to 10, where a "
        "higher score indicates better overall performance.\nPlease output a single line containing only a "
        "values indicating the scores for the Assistant.\n\n")
    box = {"text": "Please provide the bounding box coordinate of the region this sentence describes: the red cube",
           "answer": "the red cube", "answer_bbox": "[0.1, 0.2, 0.5, 0.6]"}
    g = build_messages(box, "[0.1, 0.2, 0.5, 0.6]", grounding=True)[1]["content"]
    assert "[Question]\nPlease provide the bounding box coordinate of the region this sentence describes: the red " \
           "cube\n\n[Ground truth answer]\n[0.1, 0.2, 0.5, 0.6]\n\n" in g  # full text, the box as truth
    assert ("displayed above. The user asks the question on observing an image. For your reference, the visual "
            "content in the image is represented with one descriptive sentence") in g
    assert "(x1, y1, x2, y2) with floating numbers ranging from 0 to 1" in g
    assert prompt_sha(msgs) != prompt_sha(build_messages(record, "cat", grounding=False))
    assert PROMPT_VERSION == "coin-v1"
    with pytest.raises(KeyError, match="Did you mean 'coin-v1'"):
        build_messages(record, "dog", grounding=False, version="coin-v2")


@pytest.mark.parametrize("reply, score, status", [
    ("7", 7.0, "ok"),
    ("7.5", 7.5, "ok"),
    ("Score: 10", 10.0, "ok"),  # the original read this as 1
    ("8/10", 8.0, "ok"),
    ("**9**", 9.0, "ok"),
    ("Score: **9**", 9.0, "ok"),
    ("**Score:** 6", 6.0, "ok"),
    ("[[8]]", 8.0, "ok"),
    ("0", 0.0, "ok"),
    ("10/10", 10.0, "ok"),
    ("7.5/10", 7.5, "ok"),
    ("8 out of 10", 8.0, "ok"),
    ("Rating = 6", 6.0, "ok"),
    ("Assistant: 4", 4.0, "ok"),
    ("  9.  ", 9.0, "ok"),
    ("8\nThe answer names the right object, but ... 3 ...", 8.0, "ok"),
    ("\n\n5\n", 5.0, "ok"),
    ("11", None, "out_of_range"),
    ("-1", None, "out_of_range"),
    ("10.5", None, "out_of_range"),
    ("7 8", None, "unparsable"),
    ("seven", None, "unparsable"),
    ("", None, "unparsable"),
    ("Score: 1O", None, "unparsable"),
    ("8/100", None, "unparsable"),
    ("The score is 7 because it is close", None, "unparsable"),
    ("7, mostly right", None, "unparsable"),
    ("N/A", None, "unparsable"),
    ("Score:", None, "unparsable"),
    (None, None, "unparsable"),
])
def test_parse_score_table(reply, score, status):
    p = parse_score(reply)
    assert (p.score, p.status) == (score, status)


@pytest.mark.parametrize("reply, score", [
    ("Score: 8. The answer is correct.", 8.0),
    ("8/10 because it is fine", 8.0),
    ("Score: 10 (exact match with the ground truth)", 10.0),
    ("Rating: 6, partially correct", 6.0),
    ("8 out of 10: the colour is right, the shape is not", 8.0),
    ("Score: 4.5/10; the box is too small", 4.5),
    ("**Score: 9** - the box [0.12, 0.30, 0.55, 0.80] overlaps the truth closely", 9.0),
    ("Score is 7 since 2 of 3 words match\nmore text", 7.0),
    ("[[3]]/10 mostly wrong", 3.0),
])
def test_a_score_opening_the_line_may_be_followed_by_its_reason(reply, score):
    assert parse_score(reply) == ParsedScore(score, "ok")


@pytest.mark.parametrize("reply, status", [
    ("7 apples", "unparsable"),  # a bare number: nothing says it is a score
    ("7. The answer is right.", "unparsable"),
    ("Score: 8 or 9, it is close", "unparsable"),
    ("Score: 7-8, mostly right", "unparsable"),
    ("Score: 8, 9 if lenient", "unparsable"),
    ("Score: 8 (9 if lenient)", "unparsable"),
    ("Score: 3 out of 5 because it is close", "unparsable"),
    ("8/100 because", "unparsable"),
    ("8/10/2024 was the date", "unparsable"),
    ("Score: 8abc", "unparsable"),
    ("Score: 8. On reflection a score of 9 fits better", "unparsable"),
    ("8/10, though 9/10 would be fair", "unparsable"),
    ("Score: 8.5.3 stars", "unparsable"),
    ("I would rate it 8/10 because it is fine", "unparsable"),  # the score must open the line
    ("Score: 12. Very generous", "out_of_range"),
])
def test_ambiguous_or_unlabelled_scores_with_prose_stay_unparsable(reply, status):
    assert parse_score(reply) == ParsedScore(None, status)


# --------------------------------------------------------------------------- config, cache, agreement


def test_config_reports_every_problem_with_its_key(monkeypatch, tmp_path):
    monkeypatch.delenv("COIN_TEST_MISSING_KEY", raising=False)
    with pytest.raises(ConfigError) as e:
        judge_config({"backend": "opneai", "model": "", "timeout": -1, "retries": "3", "concurrncy": 2})
    text = str(e.value)
    for part in ("judge.backend", "Did you mean 'openai'", "unknown key 'judge.concurrncy'",
                 "did you mean 'judge.concurrency'", "judge.retries must be int"):
        assert part in text
    with pytest.raises(ConfigError) as e:
        judge_config(model="m", timeout=-1, api_key_env="COIN_TEST_MISSING_KEY")
    assert "judge.timeout must be > 0, got -1.0" in str(e.value)
    assert "environment variable COIN_TEST_MISSING_KEY is not set" in str(e.value)
    with pytest.raises(ConfigError, match="must be the NAME of an environment variable") as e:
        judge_config(model="m", api_key_env="sk-abc123")  # a key pasted where its variable's name goes
    assert "sk-abc123" not in str(e.value)  # the error never echoes what may be a secret
    with pytest.raises(ConfigError, match="judge.name must be a plain folder name"):
        judge_config(model="m", name="..")
    assert judge_config(model="../..").folder_name == "judge"
    path = tmp_path / "judge.yaml"
    path.write_text("judge:\n  model: Qwen/Qwen1.5-32B-Chat\n  concurrency: 16\n  timeout: 30\n")
    cfg = judge_config(path=path, concurrency=None, timeout=5.0)  # None = flag not given: the file wins
    assert (cfg.model, cfg.options.concurrency, cfg.options.timeout) == ("Qwen/Qwen1.5-32B-Chat", 16, 5.0)
    assert cfg.folder_name == "Qwen_Qwen1.5-32B-Chat"


def test_a_backends_own_keys_are_checked_against_the_backend_chosen():
    """``timeout`` is openai's, ``dtype`` is hf's: each is read by its backend's Options, and a key
    written for the other backend is named with the backend it belongs to."""
    cfg = judge_config(backend="hf", model="m", dtype="float16", batch_size=2)
    assert (cfg.options.dtype, cfg.options.batch_size, cfg.options.device) == ("float16", 2, "auto")
    with pytest.raises(ConfigError) as e:
        judge_config(backend="hf", model="m", timeout=5.0, dtype="fp8", batchsize=3)
    problems = e.value.problems
    assert "unknown key 'judge.timeout' for judge.backend 'hf': it is an option of 'openai'" in problems
    assert "judge.dtype must be one of auto, float32, bfloat16, float16, got 'fp8'" in problems
    assert any(p.startswith("unknown key 'judge.batchsize' (did you mean 'judge.batch_size'?); backend 'hf' takes "
                            "batch_size, device, dtype besides backend, model") for p in problems)
    assert len(problems) == 3
    with pytest.raises(ConfigError, match="did you mean 'judge.model'"):  # a common key's typo is caught too
        judge_config(modle="m")


def test_the_stored_judge_config_is_flat_and_reads_back(tmp_path):
    """``config.json`` holds the keys as a user writes them (the backend's beside the common ones)."""
    cfg = judge_config(backend="openai", model="m", base_url="http://h/v1", timeout=5.0)
    stored = cfg.public_dict()
    assert stored["timeout"] == 5.0 and stored["base_url"] == "http://h/v1" and "options" not in stored
    assert "dtype" not in stored  # the hf backend's keys belong to the hf backend
    again = judge_config(stored)
    assert again.public_dict() == stored and cache_id(again) == cache_id(cfg)


def test_every_judge_backend_declares_its_options():
    """Each backend has a docstring and an ``Options`` dataclass whose defaults are valid (for ``coin ls``)."""
    from coin.options import describe, option_problems

    for name in BACKENDS:
        assert BACKENDS.doc(name), name
        options = BACKENDS.options_of(name)
        assert options is not None and describe(options), name
        assert all(o.doc for o in describe(options)), name  # every key says what it does
        assert option_problems(options, {}) == [], name
    assert JudgeConfig.__open__ == "options"


def test_cache_keys_separate_judges_versions_and_lengths(tmp_path):
    with JudgeCache(tmp_path / "c.sqlite") as c:
        c.put(("openai:a", "coin-v1", "s1", 16), "7")
        c.put(("openai:b", "coin-v1", "s1", 16), "3")
    with JudgeCache(tmp_path / "c.sqlite") as c:  # persisted across opens
        keys = [("openai:a", "coin-v1", "s1", 16), ("openai:b", "coin-v1", "s1", 16),
                ("openai:a", "coin-v2", "s1", 16), ("openai:a", "coin-v1", "s1", 32), ("openai:a", "coin-v1", "s2", 16)]
        assert c.get_many(keys) == {keys[0]: "7", keys[1]: "3"}
        assert len(c) == 2


def test_agreement_statistics():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties take their average rank: x ranks (1, 2.5, 2.5, 4), y ranks (1, 2, 3, 4) -> rho = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    assert spearman([5, 5, 5], [1, 2, 3]) is None and spearman([1], [2]) is None
    a = agreement([9, 8, 2, 5, None], [10, 3, 1, 6, 4])
    assert a["n"] == 4 and a["dropped"] == 1
    assert a["bin_agreement"] == pytest.approx(0.75)  # bins (2,2,0,1) vs (2,0,0,1)
    # chance agreement: a bins {0: 1/4, 1: 1/4, 2: 1/2}, b bins {0: 1/2, 1: 1/4, 2: 1/4} -> pe = 5/16
    assert a["kappa"] == pytest.approx((0.75 - 5 / 16) / (1 - 5 / 16))
    t = truth_agreement([10, 8, 2, 0, 5], [1.0, 0.3, 0.0, 0.0, None])
    assert (t["n_correct"], t["n_wrong"], t["dropped"]) == (2, 2, 1)
    assert (t["judge_mean_correct"], t["judge_mean_wrong"], t["gap"]) == (9.0, 1.0, 8.0)


# --------------------------------------------------------------------------- the openai backend


def test_openai_backend_retries_times_out_and_counts(server):
    cfg = _cfg(server)
    prompts = {a: build_messages({"text": "Q?\nI", "answer": "cube"}, a, grounding=False)
               for a in ("cube", "flaky", "slow", "broken", "junk")}
    backend = build_backend(cfg)
    t0 = time.time()
    got = {list(prompts)[i]: r for i, r in backend.ask(list(prompts.values()))}
    backend.close()
    assert time.time() - t0 < SLOW_SECONDS * 2  # the slow answer was abandoned at the timeout, not awaited
    assert (got["cube"].text, got["cube"].attempts) == ("10", 1)
    assert (got["flaky"].text, got["flaky"].attempts) == ("Score: 6", 2)  # a 500, then a retry
    assert got["slow"].text is None and "Timeout" in got["slow"].error and got["slow"].attempts == 2
    assert got["broken"].text is None and got["broken"].attempts == 2
    assert got["junk"].text == "I cannot rate this answer."
    assert [server.count(a) for a in prompts] == [1, 2, 2, 2, 1]


def test_judge_run_scores_counts_failures_and_resumes_from_cache(server, fake_run, run_template, monkeypatch):
    template = run_template[1]
    monkeypatch.setenv("COIN_TEST_JUDGE_KEY", "sk-test-secret-31337")
    changes = {("02-Grounding", "ImageNet", 0): "slow", ("02-Grounding", "ImageNet", 1): "junk",
               ("02-Grounding", "ImageNet", 2): "huge", ("02-Grounding", "ImageNet", 3): "flaky",
               ("02-Grounding", "ImageNet", 4): None}  # None: no prediction for that sample
    _set_outputs(fake_run, template, changes)
    cfg = _cfg(server, api_key_env="COIN_TEST_JUDGE_KEY")
    rc = judge_run(fake_run, cfg, log=lambda *a: None)

    tot = rc["counts"]["total"]
    n_all = sum(len(template["records"][t]) for ts in STAGES.values() for t in ts)
    assert tot == {"ok": n_all - 4, "unparsable": 1, "out_of_range": 1, "missing": 1, "failed": 1, "pending": 0}
    assert rc["matrix"][1][0] is None  # the cell with a failed request stays empty
    assert rc["counts"]["matrix"][1][0] == {"ok": 2, "unparsable": 1, "out_of_range": 1, "missing": 1,
                                            "failed": 1, "pending": 0, "n": 6}
    assert rc["matrix"][0][0] == pytest.approx(_expected_cell(template, "01-ImageNet", "ImageNet"))
    assert rc["matrix"][1][1] == pytest.approx(_expected_cell(template, "02-Grounding", "Grounding"))
    assert rc["zero_shot"] == pytest.approx([_expected_cell(template, "00-zeroshot", t) for t in ORDER])
    assert rc["metrics"]["bwt"] is None and rc["metrics"]["maa"] is None  # an empty cell: no metric
    ta = rc["truth_agreement"]["ImageNet"]
    # TA-wrong ImageNet answers with a score: 3 per stage at stages 0 and 1, plus "flaky" (6) and sample 5
    assert ta["judge_mean_correct"] == 10.0 and ta["judge_mean_wrong"] == pytest.approx((7 * 2 + 6) / 8)
    assert ta["n_wrong"] == 8 and ta["gap"] == pytest.approx(7.5)
    assert server.auth == {"Bearer sk-test-secret-31337"}
    for f in (fake_run / "judge").rglob("*"):  # the key reached the server and nowhere else
        assert not f.is_file() or b"sk-test-secret-31337" not in f.read_bytes()

    # Resume: only the failed request is asked again (and fails again, twice: one retry).
    before = server.count()
    judge_run(fake_run, cfg, log=lambda *a: None)
    assert server.count() - before == 2 and server.count("slow") == 4

    # The server recovers: the one missing reply is asked, the matrix fills.
    server.slow_enabled = False
    rc = judge_run(fake_run, cfg, log=lambda *a: None)
    assert server.count("slow") == 5
    # 6 samples: slow -> 5, junk -> 0, huge -> 0, flaky -> 6, missing -> 0, sample 5 (wrong at stage 2) -> 2
    assert rc["matrix"][1][0] == pytest.approx(100 * (5 + 0 + 0 + 6 + 0 + 2) / 60)
    assert rc["metrics"]["maa"] is not None

    # A third run is a pure cache hit: not one request.
    before = server.count()
    again = judge_run(fake_run, cfg, log=lambda *a: None)
    assert server.count() == before and again["matrix"] == rc["matrix"]
    assert sum(1 for _ in (fake_run / "judge" / "judge-a" / "samples.jsonl").open()) == n_all


def test_stage_and_task_selection(server, fake_run, run_template):
    cfg = _cfg(server)
    rc = judge_run(fake_run, cfg, stages=["zeroshot", 2], tasks=["Grounding"], log=lambda *a: None)
    # zero-shot and stage 2 gave the same Grounding answers: 12 answers, 6 distinct prompts, 6 requests
    assert server.count() == len(run_template[1]["records"]["Grounding"])
    assert rc["zero_shot"][0] is None and rc["zero_shot"][1] is not None and rc["matrix"][1][1] is not None
    assert rc["counts"]["matrix"][0][0]["pending"] == 6 and rc["matrix"][0][0] is None
    assert select_stages(["00-zeroshot", "01-ImageNet", "02-Grounding"], ["ImageNet", "0"]) == \
        {"01-ImageNet", "00-zeroshot"}
    with pytest.raises(JudgeError, match="no finished stage '7'"):
        judge_run(fake_run, cfg, stages=[7], log=lambda *a: None)
    with pytest.raises(JudgeError, match="task 'GQA' is not in this run"):
        judge_run(fake_run, cfg, tasks=["GQA"], log=lambda *a: None)


def test_the_same_model_name_elsewhere_never_shares_cached_replies(server, fake_run):
    """Two servers answering to one model name are two judges: the second one is asked, not read
    from the first one's cache entries (the cache key holds the endpoint)."""
    judge_run(fake_run, _cfg(server), log=lambda *a: None)
    asked = server.count()
    assert asked > 0
    other = ScriptedJudge()
    try:
        rc = judge_run(fake_run, _cfg(other), log=lambda *a: None)
        assert other.count() == asked  # every prompt asked again, none read from the first server's replies
        assert rc["counts"]["total"]["pending"] == 0
    finally:
        other.close()
    before = server.count()
    judge_run(fake_run, _cfg(server), log=lambda *a: None)
    assert server.count() == before  # the first server's replies are still there for it


def test_cache_identity_holds_everything_that_changes_a_reply(monkeypatch):
    """Configs that differ in backend, model, endpoint, revision or (hf) dtype never share a key;
    settings that cannot change a reply (concurrency, timeout, name) do."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    base = dict(backend="openai", model="m", base_url="http://127.0.0.1:8000/v1")
    ids = {cache_id(judge_config(**base))}
    for change in ({"backend": "hf", "base_url": None}, {"model": "m2"}, {"base_url": "http://127.0.0.1:8001/v1"},
                   {"base_url": None}, {"revision": "r2"}):
        ids.add(cache_id(judge_config(**{**base, **change})))
    assert len(ids) == 6
    same = cache_id(judge_config(**base, concurrency=1, timeout=5.0, name="other"))
    assert same == cache_id(judge_config(**base))
    assert cache_id(judge_config(**{**base, "base_url": "http://127.0.0.1:8000/v1/"})) == same  # one endpoint
    assert cache_id(judge_config(backend="openai", model="m")) == cache_id(judge_config(
        backend="openai", model="m", base_url="https://api.openai.com/v1"))  # the client's default
    hf = dict(backend="hf", model="some/folder", device="cpu")
    assert len({cache_id(judge_config(**hf, dtype=d)) for d in ("float32", "bfloat16", "float16")}) == 3
    assert cache_id(judge_config(**hf, dtype="auto")) == cache_id(judge_config(**hf, dtype="float32"))  # auto on cpu
    assert cache_id(judge_config(**hf, revision="v2")) != cache_id(judge_config(**hf))
    # the strings themselves are the keys of caches already on disk: they must not move
    assert same == '{"backend":"openai","endpoint":"http://127.0.0.1:8000/v1","model":"m","revision":null}'
    assert cache_id(judge_config(**hf)) == '{"backend":"hf","dtype":"float32","model":"some/folder","revision":null}'


def test_multitask_rc_reports_the_final_row_only(server, fake_run):
    """As for truth alignment: a multi-task run's earlier rows are not its model, so MAA, BWT and
    forgetting are left empty and ACC (the last row) is reported."""
    path = fake_run / "matrix.json"
    mj = json.loads(path.read_text())
    rc = judge_run(fake_run, _cfg(server), log=lambda *a: None)
    assert rc["metrics"]["maa"] is not None and rc["metrics"]["bwt"] is not None  # sequential: every metric
    path.write_text(json.dumps({**mj, "method": "multitask"}))
    rc = judge_run(fake_run, _cfg(server), log=lambda *a: None)
    m = rc["metrics"]
    assert m["maa"] is None and m["bwt"] is None and m["fwt"] is None and m["mean_forgetting"] is None
    assert m["forgetting"] == [None, None]
    assert m["acc"] == pytest.approx(sum(rc["matrix"][-1]) / 2)
    assert rc["matrix"][-1][0] is not None and json.loads((fake_run / "judge" / "judge-a" / "rc_matrix.json")
                                                          .read_text())["metrics"]["maa"] is None


# --------------------------------------------------------------------------- coin judge + report


def test_coin_judge_cli_writes_rc_matrix_and_report_sections(server, fake_run, run_template, capsys):
    common = ["--base-url", server.url, "--timeout", "2", "--retries", "0", "--quiet"]
    assert main(["judge", str(fake_run), "--model", "judge-a", *common]) == 0
    assert "Reasoning Capability (judge-a): MAA" in capsys.readouterr().out
    rc = json.loads((fake_run / "judge" / "judge-a" / "rc_matrix.json").read_text())
    template = run_template[1]
    assert rc["matrix"][1][0] == pytest.approx(_expected_cell(template, "02-Grounding", "ImageNet"))
    assert rc["metrics"]["maa"] is not None and rc["metrics"]["bwt"] is not None
    md = (fake_run / "report.md").read_text()
    assert "## Reasoning Capability: judge-a" in md and "### Agreement with truth alignment" in md
    assert "Agreement between judges" not in md  # one judge so far

    # A second judge over the same predictions: its own cache entries, and the judges' agreement.
    n_before = server.count()
    assert main(["judge", str(fake_run), "--model", "judge-b", *common]) == 0
    assert server.count() - n_before == server.count() // 2  # judge-b asked as much as judge-a did
    rc_b = json.loads((fake_run / "judge" / "judge-b" / "rc_matrix.json").read_text())
    assert rc_b["matrix"][1][0] == pytest.approx(_expected_cell(template, "02-Grounding", "ImageNet", 9.0, 3.0))
    agree = json.loads((fake_run / "judge" / "agreement.json").read_text())
    pair = agree["pairs"][0]
    assert (pair["a"], pair["b"]) == ("judge-a", "judge-b")
    assert pair["all"]["spearman"] == pytest.approx(1.0) and pair["all"]["bin_agreement"] == 1.0
    md = (fake_run / "report.md").read_text()
    assert "## Agreement between judges" in md and "## Reasoning Capability: judge-b" in md
    html = (fake_run / "report.html").read_text()
    assert 'id="rc-matrix-0"' in html and 'id="judge-agreement"' in html
    assert md.index("Reasoning Capability") < md.index("## Figures")

    capsys.readouterr()
    assert main(["judge", str(fake_run), "--model", "judge-a", "--stages", "9", *common]) == 2
    assert "no finished stage '9'" in capsys.readouterr().err
    assert main(["judge", str(fake_run), "--model", "judge-a", "--backend", "vllm", *common]) == 2
    assert "judge.backend" in capsys.readouterr().err


# --------------------------------------------------------------------------- the local hf backend


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    """A tiny random LlamaForCausalLM and a BPE tokenizer, saved as a local HF folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from coin.scoring.judge.prompt import RULE, RULE_GROUNDING, SYSTEM
    from coin.models.tiny.model import train_tokenizer

    tok = train_tokenizer([SYSTEM, RULE, RULE_GROUNDING, "Score: 10 8/10 0 1 2 3 4 5 6 7 8 9"] * 4, vocab_size=320)
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<assistant> {% endif %}")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-judge") / "lm"
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("templated", [True, False])
def test_hf_backend_end_to_end(tiny_lm, fake_run, run_template, templated, tmp_path):
    import torch

    torch.set_num_threads(1)
    model_dir = tiny_lm
    if not templated:  # a tokenizer without a chat template takes the plain layout
        model_dir = tmp_path / "plain"
        shutil.copytree(tiny_lm, model_dir)
        cfg_file = model_dir / "tokenizer_config.json"
        data = json.loads(cfg_file.read_text())
        data.pop("chat_template", None)
        cfg_file.write_text(json.dumps(data))
        (model_dir / "chat_template.jinja").unlink(missing_ok=True)
    cfg = judge_config(backend="hf", model=str(model_dir), max_tokens=3, batch_size=5, device="cpu", name="tiny")

    backend = build_backend(cfg)
    from coin.scoring.judge.backends import _render

    assert _render(backend.tokenizer, build_messages({"text": "Q\nI", "answer": "x"}, "y", False))[1] is templated
    backend.close()

    rc = judge_run(fake_run, cfg, log=lambda *a: None)
    tot = rc["counts"]["total"]
    n_all = sum(len(run_template[1]["records"][t]) for ts in STAGES.values() for t in ts)
    assert sum(tot.values()) == n_all and tot["failed"] == tot["pending"] == tot["missing"] == 0
    assert tot["ok"] + tot["unparsable"] + tot["out_of_range"] == n_all  # garbage replies are counted
    rows = [json.loads(line) for line in (fake_run / "judge" / "tiny" / "samples.jsonl").open()]
    assert all(isinstance(r["reply"], str) for r in rows)
    assert None not in (rc["matrix"][0][0], rc["matrix"][1][0], rc["matrix"][1][1], *rc["zero_shot"])

    def no_backend():
        raise AssertionError("a fully cached judge must not load its model")

    again = judge_run(fake_run, cfg, backend=no_backend, log=lambda *a: None)
    assert again["counts"]["total"] == tot


def test_killed_judge_resumes_without_asking_again(server, fake_run):
    """A kill after k replies: the next run asks for exactly the prompts that have no reply yet."""
    cfg = _cfg(server, concurrency=1)

    class KilledAfter:
        def __init__(self, k: int) -> None:
            self.inner, self.k = build_backend(cfg), k

        def ask(self, prompts):
            for n, item in enumerate(self.inner.ask(prompts)):
                if n == self.k:
                    raise KeyboardInterrupt  # what Ctrl-C or a SIGINT'ed job raises in the main thread
                yield item

        def close(self) -> None:
            self.inner.close()

    with pytest.raises(KeyboardInterrupt):
        judge_run(fake_run, cfg, backend=lambda: KilledAfter(5), log=lambda *a: None)
    assert not (fake_run / "judge" / "judge-a" / "rc_matrix.json").exists()
    assert len(JudgeCache(fake_run / "judge" / "cache.sqlite")) == 5
    # the kill leaves the request in flight to finish in its thread (not waited for): let it land
    # before counting, or on a loaded machine it lands inside the second run's count
    deadline = time.monotonic() + 30
    while any(t.name.startswith("judge") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    logs: list[str] = []
    before = server.count()
    rc = judge_run(fake_run, cfg, log=logs.append)
    distinct = int(re.search(r"(\d+) distinct prompts", logs[0]).group(1))
    assert "5 cached" in logs[0] and f"{distinct - 5} to ask" in logs[0]
    assert server.count() - before == distinct - 5
    assert rc["counts"]["total"]["ok"] == 30 and None not in rc["zero_shot"]
