"""MLLM-CL's Math task as MathVista scores it: read the answer out of the response, then compare.

MathVista's extraction runs in two steps: rules first (the response is an option, a bare
number, or says ``The answer is "X".``), then, for what the rules cannot read, an LLM that
is shown five worked examples and the response and writes the extracted answer (MLLM-CL
used gpt-4o-mini). coin keeps both steps and runs the second on its own judge backends
(``coin.scoring.judge.backends``: any OpenAI-compatible endpoint or a local model), greedy and
cached like the judge:

- the ``mathvista`` scorer (protocol ``paper`` of Math inside a run) applies the rules only;
  a response the rules cannot read is ``unparsable`` and scores 0;
- ``extract_answers`` / ``score_with_llm`` add the LLM step for those responses and score
  the result, the full MathVista protocol; ``llm_rescore_run`` does it for every stage of a
  run and writes ``RUN/extract/<judge>/<Task>.json``.

The comparison follows MathVista's normalisation: an option letter and its text are the
same answer; numbers are compared after rounding the prediction to the answer's decimals;
other text after lower-casing. MLLM-CL's test records carry no MathVista metadata
(question type, answer type, precision), so these are read from the record: options from
"A. ..." lines of the prompt, the answer type from the answer's own form. The five
in-context examples are coin's own, in MathVista's format (its originals are not copied).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Mapping, Sequence

from coin.data.sample import TestItem, as_item
from coin.scoring.parse import option_letters, parse_letter
from coin.scoring.scorers import SCORERS, Scored, TaskScore

__all__ = ["EXAMPLES", "extract_answers", "extract_by_rules", "extraction_messages", "llm_rescore_run",
           "parse_extraction", "score_extracted", "score_with_llm"]

PROMPT_VERSION = "mathvista-extract-v1"
_QUICK = re.compile(r'The answer is "(.*)"\.')
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

HEADER = ("Read the examples. Then extract the final answer from the model response of the last question, "
          "and write only that answer after 'Extracted answer:'.")
# (question, model response, extracted answer): coin's own examples in MathVista's format
EXAMPLES = (
    ("How many apples are on the table? (integer answer)",
     "I count three apples on the left and two on the right, so there are 5 apples.", "5"),
    ("What is the length of side AB? Round to one decimal place. (float answer)",
     "Using the Pythagorean theorem, AB = sqrt(3^2 + 4^2) = 5.0 units.", "5.0"),
    ("Which shape has the largest area?\nA. the circle\nB. the square\nC. the triangle",
     "The square covers 16 square units, more than the others, so the answer is B.", "B"),
    ("What fraction of the bar is shaded? (float answer, two decimals)",
     "Three of the eight parts are shaded, which is 0.375, about 0.38.", "0.38"),
    ("Is the line y = 2x steeper than y = x?\nA. Yes\nB. No",
     "Its slope 2 is greater than 1, so yes, it is steeper.", "A"),
)


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").strip())
    except ValueError:
        return None


def _decimals(text: str) -> int:
    t = text.strip()
    return len(t.split(".", 1)[1]) if "." in t else 0


def extract_by_rules(response: str, record: TestItem) -> str | None:
    """MathVista's rule step: an option, a bare number, ``The answer is "X".``; None when none applies."""
    text = response.strip()
    if not text:
        return None
    options = option_letters(record.text)
    if options:
        letter, as_letter = parse_letter(text, options)
        bare = text.rstrip(".").strip()
        if letter is not None and (not as_letter or re.fullmatch(r"\(?[A-Za-z]\)?", bare)):
            return letter  # the response is an option letter or an option's text, alone
    if _number(str("" if record.answer is None else record.answer)) is not None and _number(text.rstrip(".")) is not None:
        return text.rstrip(".").replace(",", "")
    if m := _QUICK.search(text):
        return m.group(1).strip()
    return None


def score_extracted(extracted: str | None, record: TestItem) -> Scored:
    """Compare an extracted answer with the record's ``answer`` (options, rounded numbers, text)."""
    if extracted is None or not str(extracted).strip():
        return Scored(None, 0.0, "unparsable")
    pred = str(extracted).strip()
    truth = str(record.answer).strip()
    options = option_letters(record.text)
    if options:
        p, _ = parse_letter(pred, options)
        t, _ = parse_letter(truth, options)
        if p is not None and t is not None:
            return Scored(p, 1.0 if p == t else 0.0, "correct" if p == t else "wrong_content")
    tn, pn = _number(truth), _number(pred)
    if tn is not None:
        if pn is None:
            return Scored(pred, 0.0, "wrong_format")
        same = round(pn, _decimals(truth)) == round(tn, _decimals(truth))
        return Scored(pred, 1.0 if same else 0.0, "correct" if same else "wrong_content")
    same = pred.lower().rstrip(".") == truth.lower().rstrip(".")
    return Scored(pred, 1.0 if same else 0.0, "correct" if same else "wrong_content")


@SCORERS.register
def mathvista(output: str, record: TestItem, norm=None) -> Scored:
    """MathVista's rule extraction, then its comparison; a response the rules cannot read is unparsable.

    The LLM extraction step runs outside the run (``score_with_llm``, ``llm_rescore_run``),
    on coin's judge backends. ``norm`` is unused.
    """
    return score_extracted(extract_by_rules(output, record), record)


def extraction_messages(response: str, record: TestItem) -> list[dict[str, str]]:
    """The extraction prompt: the header, the five examples, then this question and response."""
    shots = "\n\n".join(f"Question: {q}\nModel response: {r}\nExtracted answer: {a}" for q, r, a in EXAMPLES)
    question = record.text.replace("<image>", "").strip()
    return [{"role": "user", "content": f"{HEADER}\n\n{shots}\n\nQuestion: {question}\nModel response: "
                                        f"{response.strip()}\nExtracted answer:"}]


def parse_extraction(reply: str) -> str | None:
    """The answer in an extractor's reply: after the last "Extracted answer:", else the first line."""
    text = reply.strip()
    if "Extracted answer:" in text:
        text = text.rsplit("Extracted answer:", 1)[1]
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    return line or None


def extract_answers(outputs: Mapping[str, str], records: Sequence[TestItem | Mapping], judge_cfg=None,
                    cache_path: str | Path | None = None) -> dict[str, tuple[str | None, str]]:
    """Per question id: (extracted answer, how: "rules", "llm", "failed" or "none").

    The LLM (``judge_cfg``, a ``coin.scoring.judge.settings.JudgeConfig``) is asked only for the
    responses the rules cannot read; its replies are cached in sqlite (``cache_path``) keyed by
    the extractor, the prompt version and the prompt, so a second pass asks nothing again.
    A failed request leaves that answer unextracted ("failed"), never guessed.
    """
    out: dict[str, tuple[str | None, str]] = {}
    todo: list[tuple[str, list[dict[str, str]]]] = []
    for r in map(as_item, records):
        qid = r.question_id
        response = outputs.get(qid)
        if response is None:
            continue
        found = extract_by_rules(response, r)
        if found is not None:
            out[qid] = (found, "rules")
        elif judge_cfg is None or not response.strip():
            out[qid] = (None, "none")
        else:
            todo.append((qid, extraction_messages(response, r)))
    if todo:
        out.update(_ask(todo, judge_cfg, cache_path))
    return out


def _ask(todo: list[tuple[str, list]], judge_cfg, cache_path) -> dict[str, tuple[str | None, str]]:
    from coin.scoring.judge.backends import build_backend, cache_id
    from coin.scoring.judge.cache import JudgeCache

    who = cache_id(judge_cfg)
    keys = [(who, PROMPT_VERSION, hashlib.sha256(json.dumps(m, sort_keys=True).encode()).hexdigest(),
             judge_cfg.max_tokens) for _, m in todo]
    cache = JudgeCache(cache_path) if cache_path is not None else None
    try:
        known = cache.get_many(keys) if cache is not None else {}
        ask = [k for k, key in enumerate(keys) if key not in known]
        replies = {keys[k]: known[keys[k]] for k in range(len(keys)) if keys[k] in known}
        if ask:
            backend = build_backend(judge_cfg)
            try:
                for i, reply in backend.ask([todo[k][1] for k in ask]):
                    if reply.text is not None:
                        replies[keys[ask[i]]] = reply.text
                        if cache is not None:
                            cache.put(keys[ask[i]], reply.text)
            finally:
                backend.close()
    finally:
        if cache is not None:
            cache.close()
    return {qid: ((parse_extraction(replies[key]), "llm") if key in replies else (None, "failed"))
            for (qid, _), key in zip(todo, keys)}


def score_with_llm(outputs: Mapping[str, str], records: Sequence[TestItem | Mapping], judge_cfg,
                   cache_path: str | Path | None = None) -> TaskScore:
    """The full MathVista protocol: rules, the LLM for what they miss, then the comparison."""
    extracted = extract_answers(outputs, records, judge_cfg, cache_path)
    tags = {"correct": 0, "wrong_content": 0, "wrong_format": 0, "unparsable": 0, "missing": 0}
    samples, total = [], 0.0
    records = [as_item(r) for r in records]
    for r in records:
        qid = r.question_id
        if qid not in outputs:
            s, how = Scored(None, 0.0, "missing"), "none"
        else:
            value, how = extracted[qid]
            s = score_extracted(value, r)
        total += s.score
        tags[s.tag] += 1
        samples.append({"question_id": r.question_id, "output": outputs.get(qid), "parsed": s.parsed,
                        "score": s.score, "tag": s.tag, "extracted_by": how})
    n = len(records)
    return TaskScore(score=100.0 * total / n if n else 0.0, n=n, tags=tags, samples=samples)


def llm_rescore_run(run_dir: str | Path, task: str, judge_cfg, records: Sequence[TestItem | Mapping]) -> dict:
    """Rescore ``task``'s predictions of every stage of a run with the LLM step; write and return the table.

    Writes ``RUN/extract/<judge folder>/<task>.json``: per stage, the rules-only score the run
    recorded and the score with the LLM step, and the per-sample rows. The replies are cached
    in ``RUN/extract/cache.sqlite``.
    """
    from coin.io import atomic_write_json, read_jsonl

    run = Path(run_dir)
    stages = {}
    for pred in sorted(run.glob(f"stages/*/predictions/{task}.jsonl")):
        rows = read_jsonl(pred)
        outputs = {str(r["question_id"]): r["output"] for r in rows if r.get("output") is not None}
        result = score_with_llm(outputs, records, judge_cfg, run / "extract" / "cache.sqlite")
        rules = sum(float(r.get("score") or 0.0) for r in rows) / len(rows) * 100 if rows else None
        stages[pred.parent.parent.name] = {"rules": rules, "llm": result.score, "tags": result.tags,
                                           "samples": result.samples}
    table = {"task": task, "extractor": judge_cfg.judge_id, "prompt_version": PROMPT_VERSION, "stages": stages}
    atomic_write_json(run / "extract" / judge_cfg.folder_name / f"{task}.json", table)
    return table


# the names these scorers had before they registered under their own
score_mathvista = mathvista
