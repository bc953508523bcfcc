"""Judge backends: who answers the prompts. One registry, two entries.

- ``openai``: any OpenAI-compatible chat endpoint (vLLM, SGLang, Ollama, OpenAI...)
  through the ``openai`` client (``pip install 'coin-cl[judge]'``): bounded concurrency in
  threads, a per-request timeout, retries with exponential backoff, temperature 0
  (the ``paper`` protocol's sampling settings instead under ``judge.protocol: paper``).
- ``hf``: a local Hugging Face causal LM, batched greedy generation with left padding.

Each backend declares the ``judge:`` keys it takes beside the common ones (``JudgeConfig``)
as its ``Options`` dataclass, built and checked by ``coin.options`` when the judge config is
read (``coin.scoring.judge.settings_check``) and listed by ``coin ls judge-backends``. A backend may
say which of its settings change a reply (``identity``), so that the cache never hands one
judge's replies to another (``cache_id``).

A backend's ``ask(prompts)`` yields ``(index, Reply)`` as answers arrive, in any order,
so the caller can cache each one at once and a kill loses almost nothing. A request
that still fails after its retries yields a ``Reply`` with ``error`` set instead of
raising: one bad sample must not stop ten thousand good ones, and the caller counts it.
Decoding is greedy under the default ``coin`` protocol (the original sampled at temperature
0.7, so its scores changed from one run to the next); ``judge.protocol: paper`` sends the
original's sampling settings (``coin.scoring.judge.protocols``).
"""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence, TypeVar

from coin import install_hint
from coin.scoring.judge.settings import JudgeConfig
from coin.scoring.judge.prompt import Messages
from coin.scoring.judge.protocols import DEFAULT_PROTOCOL, get_protocol
from coin.scoring.judge.redact import redact, secrets_of
from coin.options import flat_dict, parse
from coin.registry import Registry

__all__ = ["BACKENDS", "HFJudge", "HFOptions", "JudgeBackend", "OpenAIJudge", "OpenAIOptions", "Reply",
           "build_backend", "cache_id", "options_of"]


@dataclass(frozen=True)
class Reply:
    """The judge's text, or the error that prevented it, and how many attempts were made."""

    text: str | None
    error: str | None = None
    attempts: int = 1


class JudgeBackend(Protocol):
    def ask(self, prompts: Sequence[Messages]) -> Iterator[tuple[int, Reply]]:
        """Yield ``(index into prompts, Reply)`` for every prompt, as each is answered."""
        ...

    def close(self) -> None: ...


BACKENDS: Registry[Callable[[JudgeConfig], JudgeBackend]] = Registry("judge backend")
OPENAI_DEFAULT_URL = "https://api.openai.com/v1"  # the openai client's endpoint without base_url


def build_backend(cfg: JudgeConfig) -> JudgeBackend:
    """The backend registered as ``cfg.backend``, set up from ``cfg``."""
    return BACKENDS.get(cfg.backend)(cfg)


O = TypeVar("O")


def options_of(cfg: JudgeConfig, cls: type[O]) -> O:
    """``cfg``'s backend options as ``cls``: parsed already by ``judge_config``, else parsed here (raising)."""
    if isinstance(cfg.options, cls):
        return cfg.options
    return parse(cls, cfg.options or {}, "judge.", what="judge config")


def cache_id(cfg: JudgeConfig) -> str:
    """Who answers, for the cache key: everything besides the prompt that changes a reply.

    The backend says what that is (``identity``): e.g. the endpoint for ``openai``, the
    revision and the dtype actually loaded for ``hf``. A backend without ``identity`` keys on
    the model, the revision and all of its own options. JSON, so no two configs share a string.
    A protocol other than the default (its sampling) is part of it; the default's keys stay as
    they were before protocols existed, so caches already on disk keep their replies.
    """
    identity = getattr(BACKENDS.get(cfg.backend), "identity", None)
    fields = identity(cfg) if identity is not None else {
        "model": cfg.model, "revision": cfg.revision, **(flat_dict(cfg.options) or {})}
    if cfg.protocol != DEFAULT_PROTOCOL:
        fields["protocol"] = cfg.protocol
    return json.dumps({"backend": cfg.backend, **fields}, sort_keys=True, separators=(",", ":"), default=str)


def _openai_sampling(cfg: JudgeConfig) -> dict:
    """The request's decoding arguments under ``cfg.protocol``; vLLM reads ``repetition_penalty`` from the body."""
    p = get_protocol(cfg.protocol)
    out: dict = {"temperature": 0.0, "max_tokens": p.reply_tokens(cfg.max_tokens)}
    out.update({k: v for k, v in p.sampling.items() if k != "repetition_penalty"})
    if "repetition_penalty" in p.sampling:
        out["extra_body"] = {"repetition_penalty": p.sampling["repetition_penalty"]}
    return out


def _hf_sampling(cfg: JudgeConfig) -> dict:
    """``generate``'s decoding arguments under ``cfg.protocol``: greedy, or the protocol's sampling."""
    p = get_protocol(cfg.protocol)
    tokens = {"max_new_tokens": p.reply_tokens(cfg.max_tokens)}
    return {**tokens, "do_sample": False} if p.greedy else {**tokens, "do_sample": True, **p.sampling}


def _short(e: BaseException, secrets: Sequence[str] = ()) -> str:
    """The error as stored in ``Reply.error``: secrets and credentials redacted first, then cut to 200 characters
    (a server's 401 may echo the request's ``Authorization`` header; a cut after redaction leaves no half key)."""
    return f"{type(e).__name__}: {redact(str(e), secrets)[:200]}"


# --------------------------------------------------------------------------- openai


@dataclass
class OpenAIOptions:
    """``judge:`` keys of the ``openai`` backend (the key itself stays in the environment)."""

    base_url: str | None = None  # endpoint, e.g. http://127.0.0.1:8000/v1 (None: OPENAI_BASE_URL, else OpenAI's)
    api_key_env: str | None = None  # NAME of the environment variable holding the API key (None: no key)
    concurrency: int = 8  # requests in flight
    timeout: float = 60.0  # seconds per request
    retries: int = 3  # extra attempts after a failed request
    backoff: float = 1.0  # first retry waits this long, doubling each time

    def check(self) -> list[str]:
        out = [f"{k} must be > 0, got {getattr(self, k)}" for k in ("concurrency", "timeout") if getattr(self, k) <= 0]
        out += [f"{k} must be >= 0, got {getattr(self, k)}" for k in ("retries", "backoff") if getattr(self, k) < 0]
        if self.api_key_env is not None:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
                # never echo the value: it may be the key itself, pasted into the wrong field
                out.append("api_key_env must be the NAME of an environment variable (letters, digits, _); "
                           "put the key itself in that variable, never in the config")
            elif not os.environ.get(self.api_key_env):
                out.append(f"api_key_env: environment variable {self.api_key_env} is not set")
        return out


@BACKENDS.register
class OpenAIJudge:
    """An OpenAI-compatible endpoint; the key is read from the variable ``judge.api_key_env`` names.

    Without ``api_key_env`` the client sends a placeholder key (local servers ignore it)
    instead of silently picking up ``OPENAI_API_KEY``. The client's own retries are off:
    ours count attempts and back off ``backoff * 2**k`` seconds. Client errors (400, 401,
    403, 404, 422) are not retried: asking again cannot change the answer.
    """

    name = "openai"
    Options = OpenAIOptions

    @staticmethod
    def identity(cfg: JudgeConfig) -> dict:
        """What the cache key needs besides the prompt: the model, the endpoint serving it, its revision."""
        base_url = options_of(cfg, OpenAIOptions).base_url
        url = base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_URL  # as the client resolves it
        return {"model": cfg.model, "endpoint": url.rstrip("/"), "revision": cfg.revision}

    def __init__(self, cfg: JudgeConfig) -> None:
        try:
            import openai
        except ImportError:
            raise ImportError(f"the openai judge backend needs the openai client: {install_hint('judge')}") from None
        self.cfg = cfg
        self.opts = opts = options_of(cfg, OpenAIOptions)
        self._openai = openai
        key = os.environ.get(opts.api_key_env, "") if opts.api_key_env else "EMPTY"
        self._secrets = secrets_of(cfg)  # redacted from every error, and from a reply that echoes the key
        self.client = openai.OpenAI(api_key=key, base_url=opts.base_url, timeout=opts.timeout, max_retries=0)
        self._final = (openai.BadRequestError, openai.AuthenticationError, openai.PermissionDeniedError,
                       openai.NotFoundError, openai.UnprocessableEntityError)

    def _one(self, messages: Messages) -> Reply:
        cfg, opts, last = self.cfg, self.opts, None
        for attempt in range(opts.retries + 1):
            if attempt:
                time.sleep(opts.backoff * 2 ** (attempt - 1))
            try:
                r = self.client.chat.completions.create(
                    model=cfg.model, messages=messages, **_openai_sampling(cfg))
                text = r.choices[0].message.content
                if not isinstance(text, str):
                    raise ValueError(f"response has no message content: {str(r)}")
                if any(s in text for s in self._secrets):  # an endpoint echoing the key: never cached
                    text = redact(text, self._secrets)
                return Reply(text, attempts=attempt + 1)
            except self._final as e:
                return Reply(None, _short(e, self._secrets), attempt + 1)
            except Exception as e:  # timeouts, 5xx, 429, broken connections, malformed bodies
                last = e
        assert last is not None
        return Reply(None, _short(last, self._secrets), opts.retries + 1)

    def ask(self, prompts: Sequence[Messages]) -> Iterator[tuple[int, Reply]]:
        pool = ThreadPoolExecutor(max_workers=self.opts.concurrency, thread_name_prefix="judge")
        try:
            futures = {pool.submit(self._one, m): i for i, m in enumerate(prompts)}
            for f in as_completed(futures):
                yield futures[f], f.result()
        finally:  # on a kill or an early stop, drop what has not started instead of waiting for it
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.client.close()


# --------------------------------------------------------------------------- hf


def _render(tokenizer, messages: Messages) -> tuple[str, bool]:
    """The prompt text and whether it came from the chat template (which adds its own BOS).

    Templates that refuse a system turn get it folded into the user turn; a tokenizer
    without a usable template gets a plain ``system / USER: / ASSISTANT:`` layout.
    """
    if getattr(tokenizer, "chat_template", None):
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        rest = [m for m in messages if m["role"] != "system"]
        folded = [{"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}] + rest[1:] if system else rest
        for msgs in (messages, folded):
            try:
                return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True), True
            except Exception:
                continue
    parts = [m["content"] if m["role"] == "system" else f"USER: {m['content']}" for m in messages]
    return "\n\n".join(parts) + "\nASSISTANT:", False


HF_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class HFOptions:
    """``judge:`` keys of the ``hf`` backend (``judge.model``: a local folder or a hub id)."""

    batch_size: int = 8  # prompts per generate call
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:1"...
    dtype: str = "auto"  # "auto" (bfloat16 on cuda, float32 on cpu) or a torch dtype name

    def check(self) -> list[str]:
        out = [f"batch_size must be > 0, got {self.batch_size}"] if self.batch_size <= 0 else []
        if self.dtype not in HF_DTYPES:
            out.append(f"dtype must be one of {', '.join(HF_DTYPES)}, got {self.dtype!r}")
        return out


@BACKENDS.register
class HFJudge:
    """A local causal LM (``judge.model``: a folder or hub id) generating greedily in batches.

    Prompts are sorted by length before batching so that padding stays small; left
    padding keeps every prompt's last token next to its first generated one.
    """

    name = "hf"
    Options = HFOptions

    @staticmethod
    def device_and_dtype(cfg: JudgeConfig) -> tuple[str, str]:
        """The device and dtype name ``auto`` resolves to here (bfloat16 on cuda, float32 on cpu)."""
        import torch

        opts = options_of(cfg, HFOptions)
        device = opts.device if opts.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = opts.dtype if opts.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")
        return device, dtype

    @staticmethod
    def identity(cfg: JudgeConfig) -> dict:
        """What the cache key needs besides the prompt: the model, its revision and the dtype it runs in
        (the resolved one: ``auto`` gives other replies on a GPU than on a CPU)."""
        return {"model": cfg.model, "revision": cfg.revision, "dtype": HFJudge.device_and_dtype(cfg)[1]}

    def __init__(self, cfg: JudgeConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self.opts = options_of(cfg, HFOptions)
        device, dtype = self.device_and_dtype(cfg)
        revision = {"revision": cfg.revision} if cfg.revision else {}
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model, **revision)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=getattr(torch, dtype), **revision)
        self.model = self.model.to(device).eval()
        self.device = device

    def _generate(self, texts: list[str], templated: bool) -> list[str]:
        import torch

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not templated).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**enc, **_hf_sampling(self.cfg),
                                      pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    def ask(self, prompts: Sequence[Messages]) -> Iterator[tuple[int, Reply]]:
        rendered = [_render(self.tokenizer, m) for m in prompts]
        order = sorted(range(len(prompts)), key=lambda i: (rendered[i][1], len(rendered[i][0])))
        bs = self.opts.batch_size
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            groups: dict[bool, list[int]] = {}
            for i in idx:  # templated and plain prompts differ in special tokens: never mix them
                groups.setdefault(rendered[i][1], []).append(i)
            for templated, ids in groups.items():
                try:
                    texts = self._generate([rendered[i][0] for i in ids], templated)
                    replies = [Reply(t) for t in texts]
                except Exception as e:  # e.g. out of memory: count the batch as failed, go on
                    replies = [Reply(None, _short(e, secrets_of(self.cfg)))] * len(ids)
                yield from zip(ids, replies)

    def close(self) -> None:
        self.model = None
