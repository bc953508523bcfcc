"""The Reasoning-Capability judge: an LLM grades each answer 0-10 against the ground truth.

    prompt.py     the CoIN prompt (SPEC section 6), versioned
    parse.py      strict 0-10 score parsing; unparsable replies are counted, never guessed
    protocols.py  ``judge.protocol``: coin (default: greedy, strict, reproducible) or paper (the
                  original as run: sampled, loosely parsed, rounded)
    settings.py   ``JudgeConfig``: the keys every backend reads (a backend's own keys sit beside them)
    backends.py   the ``BACKENDS`` registry: ``openai`` (any OpenAI-compatible endpoint) and ``hf``
                  (local causal LM), each with the ``Options`` it takes
    settings_check.py  ``judge_config``: YAML and CLI flags checked against the backends, errors naming keys
    cache.py      sqlite cache keyed by (judge identity, prompt version, prompt sha256, max_tokens)
    redact.py     the API key and credential-shaped text out of every error kept, logged or raised
    agreement.py  judge vs truth alignment, judge vs judge

Running a judge over a run folder (``judge_run``: the RC matrix and agreement out) is
orchestration, one layer up: ``coin.engine.judging``.
"""

from coin.scoring.judge.agreement import agreement, spearman, truth_agreement
from coin.scoring.judge.backends import BACKENDS, Reply, build_backend, cache_id
from coin.scoring.judge.cache import JudgeCache
from coin.scoring.judge.settings import JudgeConfig
from coin.scoring.judge.settings_check import judge_config
from coin.scoring.judge.parse import ParsedScore, parse_score
from coin.scoring.judge.prompt import PROMPT_VERSION, build_messages, prompt_sha
from coin.scoring.judge.protocols import JUDGE_PROTOCOLS, get_protocol

__all__ = [
    "BACKENDS", "JUDGE_PROTOCOLS", "JudgeCache", "JudgeConfig", "PROMPT_VERSION", "ParsedScore", "Reply", "agreement",
    "build_backend", "build_messages", "cache_id", "get_protocol", "judge_config", "parse_score", "prompt_sha",
    "spearman", "truth_agreement",
]
