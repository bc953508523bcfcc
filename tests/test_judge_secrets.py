"""A judge endpoint that echoes the API key back never gets it stored, logged or printed (issue 29.8).

A loopback OpenAI-compatible server answers every request with a 401 whose body repeats the
request's ``Authorization`` header and the bare key, as some proxies and misconfigured servers do.
``coin judge`` runs against it with the key in the environment; afterwards no file of the run
folder or the judge cache, no line on stdout or stderr and no log record holds the key.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import pytest

pytest.importorskip("openai")

from helpers_server import LoopbackServer  # noqa: E402

from coin.cli import main  # noqa: E402
from coin.engine.judging import judge_run  # noqa: E402
from coin.scoring.judge import judge_config  # noqa: E402
from coin.scoring.judge.backends import Reply  # noqa: E402

KEY_ENV = "COIN_TEST_SECRET_JUDGE_KEY"
QUESTIONS = [("q1", "cat", "cat"), ("q2", "dog", "cat"), ("q3", "bird", "bird")]


def _leaks(key: str, text: str | bytes) -> bool:
    """Whether ``text`` holds the key or a recognisable piece of it (its random tail, or a 12-character cut)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    tail = key[len("sk-coin-"):]
    return key in text or any(tail[i:i + 12] in text for i in range(len(tail) - 11))


def _run_folder(root: Path) -> Path:
    """A finished one-task run folder whose predictions carry their question and truth (no test files needed)."""
    run = root / "run"
    preds = run / "stages" / "00-zeroshot" / "predictions"
    preds.mkdir(parents=True)
    preds.joinpath("ImageNet.jsonl").write_text("".join(
        json.dumps({"task": "ImageNet", "question_id": q, "text": "What is shown?", "answer": truth, "output": out,
                    "score": float(out == truth)}) + "\n" for q, out, truth in QUESTIONS))
    (run / "stages" / "00-zeroshot" / "DONE").write_text("")
    (run / "matrix.json").write_text(json.dumps({"tasks": ["ImageNet"], "matrix": [[None]], "zero_shot": [66.7],
                                                 "method": "sequential"}))
    return run


@pytest.fixture
def key(monkeypatch) -> str:
    value = "sk-coin-" + secrets.token_hex(20)
    monkeypatch.setenv(KEY_ENV, value)
    return value


@pytest.fixture
def echoing_server():
    """401 for everything, the body echoing the Authorization header and the bare key near its start."""
    seen: list[str] = []

    def respond(body: dict, headers) -> tuple[int, dict]:
        auth = headers.get("Authorization", "")
        seen.append(auth)
        bare = auth.split(" ", 1)[-1]
        return 401, {"error": {"message": f"Incorrect API key provided: {bare}. You sent Authorization: {auth}",
                               "type": "invalid_request_error", "code": "invalid_api_key",
                               "request_headers": {"Authorization": auth}}}

    with LoopbackServer(respond) as server:
        server.seen = seen
        yield server


def test_a_401_echoing_the_key_leaves_it_in_no_file_log_or_output(echoing_server, key, tmp_path, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    run = _run_folder(tmp_path)
    cache = tmp_path / "cache" / "judge.sqlite"
    code = main(["judge", str(run), "--backend", "openai", "--model", "judge-x", "--base-url", echoing_server.url,
                 "--api-key-env", KEY_ENV, "--retries", "0", "--timeout", "5", "--cache", str(cache),
                 "--quiet", "--no-report"])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert echoing_server.seen and set(echoing_server.seen) == {f"Bearer {key}"}  # the key did reach the server

    rows = [json.loads(line) for line in (run / "judge" / "judge-x" / "samples.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["failed"] * len(QUESTIONS)
    for r in rows:  # the error is still there to read, minus the secret
        assert "401" in r["error"] and "AuthenticationError" in r["error"] and "[REDACTED]" in r["error"]
        assert not _leaks(key, r["error"])

    files = [p for p in [*run.rglob("*"), *cache.parent.rglob("*")] if p.is_file()]
    assert any(p.name == "samples.jsonl" for p in files) and any(p.name.startswith("judge.sqlite") for p in files)
    for p in files:
        assert not _leaks(key, p.read_bytes()), f"{p} holds the API key"
    assert "3 requests failed" in out and "[REDACTED]" in out  # the log names the failure, redacted
    assert not _leaks(key, out) and not _leaks(key, err)
    assert not _leaks(key, caplog.text)
    assert not any(_leaks(key, r.getMessage()) for r in caplog.records)


def test_an_exception_carrying_the_key_reaches_the_caller_redacted(key, tmp_path):
    """A backend that raises (a plugin's, or a client error outside the per-request handling) with the key
    in its message: what reaches the CLI names the error but not the key."""
    run = _run_folder(tmp_path)

    class Raising:
        def ask(self, prompts):
            raise RuntimeError(f"connection refused; headers were {{'Authorization': 'Bearer {key}'}}, key {key}")
            yield  # pragma: no cover

        def close(self) -> None:
            pass

    cfg = judge_config(backend="openai", model="judge-x", base_url="http://127.0.0.1:9/v1", api_key_env=KEY_ENV)
    with pytest.raises(Exception) as info:
        judge_run(run, cfg, backend=Raising, log=lambda *a: None)
    assert "RuntimeError" in str(info.value) and "connection refused" in str(info.value)
    assert not _leaks(key, str(info.value)) and not _leaks(key, repr(info.value.args))
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained traceback shows it


def test_a_plugin_backends_error_and_an_echoed_reply_are_redacted_before_they_are_stored(key, tmp_path):
    """``judge_run`` redacts what any backend returns: a failed reply's error, and a reply text holding the key."""
    run = _run_folder(tmp_path)

    class Echo:
        def ask(self, prompts):
            yield 0, Reply(None, f"HTTPError: 401 for api_key={key}")
            yield 1, Reply(f"Score: 7 (you sent Bearer {key})")
            yield 2, Reply("10")

        def close(self) -> None:
            pass

    cfg = judge_config(backend="openai", model="judge-x", base_url="http://127.0.0.1:9/v1", api_key_env=KEY_ENV)
    rc = judge_run(run, cfg, backend=Echo, log=lambda *a: None)
    assert rc["counts"]["total"]["failed"] == 1 and rc["counts"]["total"]["ok"] == 2
    for p in run.rglob("*"):
        assert not p.is_file() or not _leaks(key, p.read_bytes()), f"{p} holds the API key"


@pytest.mark.parametrize("text, expected", [
    ("Error code: 401 - {'error': {'authorization': 'Bearer sk-abc.def'}}",
     "Error code: 401 - {'error': {'authorization': '[REDACTED]'}}"),
    ("Authorization: Basic dXNlcjpwYXNz\r\nHost: x", "Authorization: [REDACTED]\r\nHost: x"),
    ('{"Proxy-Authorization": "Bearer abc"}', '{"Proxy-Authorization": "[REDACTED]"}'),
    ("sent Bearer abc123, got 401", "sent Bearer [REDACTED], got 401"),
    ("GET /v1/models?api_key=abc&x=1", "GET /v1/models?api_key=[REDACTED]&x=1"),
    ('{"x-api-key": "abc", "n": 1}', '{"x-api-key": "[REDACTED]", "n": 1}'),
    ("the key s3cr3t-value was rejected", "the key [REDACTED] was rejected"),
    # nothing credential-shaped: left alone
    ("api_key_env must be the NAME of a variable; max_tokens=16", "api_key_env must be the NAME of a variable; "
                                                                  "max_tokens=16"),
])
def test_redact(text, expected):
    from coin.scoring.judge.redact import redact

    assert redact(text, ["s3cr3t-value", ""]) == expected
