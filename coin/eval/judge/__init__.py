"""The Reasoning-Capability judge: an LLM grades each answer 0-10 against the ground truth.

    prompt.py     the CoIN prompt (SPEC section 6), versioned
    parse.py      strict 0-10 score parsing; unparsable replies are counted, never guessed
    protocols.py  ``judge.protocol``: coin (default: greedy, strict, reproducible) or paper (the
                  original as run: sampled, loosely parsed, rounded)
    config.py     ``JudgeConfig``: the keys every backend reads (a backend's own keys sit beside them)
    backends.py   the ``BACKENDS`` registry: ``openai`` (any OpenAI-compatible endpoint) and ``hf``
                  (local causal LM), each with the ``Options`` it takes
    configure.py  ``judge_config``: YAML and CLI flags checked against the backends, errors naming keys
    cache.py      sqlite cache keyed by (judge identity, prompt version, prompt sha256, max_tokens)
    redact.py     the API key and credential-shaped text out of every error kept, logged or raised
    agreement.py  judge vs truth alignment, judge vs judge
    run.py        ``judge_run``: a run folder in, the RC matrix and agreement out
"""

from coin.eval.judge.agreement import agreement, spearman, truth_agreement
from coin.eval.judge.backends import BACKENDS, Reply, build_backend, cache_id
from coin.eval.judge.cache import JudgeCache
from coin.eval.judge.config import JudgeConfig
from coin.eval.judge.configure import judge_config
from coin.eval.judge.parse import ParsedScore, parse_score
from coin.eval.judge.prompt import PROMPT_VERSION, build_messages, prompt_sha
from coin.eval.judge.protocols import JUDGE_PROTOCOLS, get_protocol
from coin.eval.judge.run import judge_run, write_agreement

__all__ = [
    "BACKENDS", "JUDGE_PROTOCOLS", "JudgeCache", "JudgeConfig", "PROMPT_VERSION", "ParsedScore", "Reply", "agreement",
    "build_backend", "build_messages", "cache_id", "get_protocol", "judge_config", "judge_run", "parse_score",
    "prompt_sha",
    "spearman", "truth_agreement", "write_agreement",
]
