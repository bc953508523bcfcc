"""Caption metrics as UCIT scores them: pycocoevalcap's BLEU-1..4, METEOR, ROUGE-L and CIDEr.

UCIT (HiDe-LLaVA) scores VizWiz-Caption and Flickr30k with the COCO caption evaluation:
every caption is tokenised by the PTB tokenizer (Stanford CoreNLP, a Java program), then
BLEU-1..4, METEOR (also Java), ROUGE-L and CIDEr are computed over the whole test set, and
the task's score is the mean of the seven x 100. The references are the test record's
``references`` (joined from the benchmark's COCO-format reference file, ``coin.benchmarks.ucit.benchmark``),
else its one ``answer``.

These are corpus metrics: BLEU and METEOR pool their counts over the corpus and CIDEr's
weights come from all references, so the task score is computed as a whole (the scorer has
``score_task``), not as a mean of per-caption numbers. Each prediction row still gets a
per-caption score, the mean of the seven per-caption values pycocoevalcap returns (CIDEr's
may exceed 1), so a row can be read and bootstrap intervals drawn; the mean of those rows
is close to, not equal to, the task score.

pycocoevalcap is the optional extra ``captions`` (``pip install -e ".[captions]"``); Java
comes from Debian's ``default-jre-headless``. A run without either stops at the first
caption score with an error naming what to install. Results are memoised per process on
the exact captions, so rescoring unchanged predictions does not start Java again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from typing import Mapping, Sequence

from coin.data.sample import TestItem
from coin.errors import CaptionMetricsError
from coin.scoring.protocol import ANSWER_SOURCES, SOURCE_KEYS
from coin.scoring.scorers import SCORERS, Scored, TaskScore

__all__ = ["METRICS", "CaptionMetricsError", "caption_metrics", "references_of"]

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
JAVA_PACKAGE = "default-jre-headless"
ANSWER_SOURCES.setdefault("references", "reference captions (`references`: joined from the benchmark's COCO-format "
                                        "reference file by image id, else the record's one `answer`)")
SOURCE_KEYS.setdefault("references", ("answer",))  # the record's own caption, where no reference joins

_MEMO: dict[str, tuple[dict[str, float], dict[str, list[float]]]] = {}


def references_of(record: TestItem) -> list[str]:
    """A test record's reference captions: ``references`` when joined, else its ``answer``."""
    refs = record.extra.get("references")
    if isinstance(refs, list) and refs:
        return [str(r) for r in refs]
    answer = record.answer
    return [str(a) for a in answer] if isinstance(answer, list) else [str(answer)]


def _scorers():
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    except ImportError:
        raise CaptionMetricsError('caption metrics need pycocoevalcap: pip install -e ".[captions]" '
                                  "(or pip install pycocoevalcap)") from None
    if shutil.which("java") is None:
        raise CaptionMetricsError("caption metrics need a Java runtime for the PTB tokenizer and METEOR: install "
                                  f"Debian's package {JAVA_PACKAGE} (apt-get install {JAVA_PACKAGE})")
    return PTBTokenizer, Bleu, Meteor, Rouge, Cider


def caption_metrics(candidates: Sequence[str], references: Sequence[Sequence[str]]
                    ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(corpus value per metric, per-caption values per metric) for aligned candidates and references.

    Image ids are 1..N in the given order, as UCIT numbers its predictions in test-file order.
    """
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates for {len(references)} reference lists")
    key = hashlib.sha256(json.dumps([list(candidates), [list(r) for r in references]]).encode()).hexdigest()
    if key in _MEMO:
        return _MEMO[key]
    PTBTokenizer, Bleu, Meteor, Rouge, Cider = _scorers()
    ids = list(range(1, len(candidates) + 1))
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": r} for r in refs] for i, refs in zip(ids, references)})
    res = tok.tokenize({i: [{"caption": c}] for i, c in zip(ids, candidates)})
    corpus: dict[str, float] = {}
    each: dict[str, list[float]] = {}
    meteor = Meteor()
    try:
        for scorer, names in ((Bleu(4), METRICS[:4]), (meteor, ("METEOR",)), (Rouge(), ("ROUGE_L",)),
                              (Cider(), ("CIDEr",))):
            with contextlib.redirect_stdout(io.StringIO()):  # BLEU prints its counts
                value, values = scorer.compute_score(gts, res)
            if len(names) == 1:
                value, values = [value], [values]
            for name, v, vs in zip(names, value, values):
                corpus[name] = float(v)
                each[name] = [float(x) for x in vs]
    finally:
        _close(meteor)
    _MEMO[key] = (corpus, each)
    return corpus, each


def _close(meteor) -> None:
    """Stop METEOR's Java process (pycocoevalcap 1.2 leaves it to the garbage collector)."""
    proc = getattr(meteor, "meteor_p", None)
    if proc is not None and proc.poll() is None:
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        proc.kill()
        proc.wait()


class CaptionScorer:
    """UCIT's caption score: the mean of BLEU-1..4, METEOR, ROUGE-L and CIDEr over the test set, x 100.

    Difference from UCIT's code: a question without a prediction is scored as an empty
    caption and counted (the original evaluated the predictions it had). ``norm`` is
    unused: the PTB tokenizer is the normalisation.
    """

    name = "caption"

    def __call__(self, output: str, record: TestItem, norm=None) -> Scored:
        """One caption alone (``coin score`` on a single row); a task is scored by ``score_task``."""
        result = self.score_task({record.question_id: output}, [record])
        s = result.samples[0]
        return Scored(s["parsed"], s["score"], s["tag"])

    def score_task(self, outputs: Mapping[str, str], records: Sequence[TestItem]) -> TaskScore:
        keys = [r.question_id for r in records]
        cands = [str(outputs.get(k) or "").strip() for k in keys]
        corpus, each = caption_metrics(cands, [references_of(r) for r in records])
        tags = {"correct": 0, "wrong_content": 0, "wrong_format": 0, "unparsable": 0, "missing": 0}
        samples = []
        for k, (record, key, cand) in enumerate(zip(records, keys, cands)):
            value = sum(each[m][k] for m in METRICS) / len(METRICS)
            # "correct": the caption shares words with the references (BLEU-1 above its smoothing floor)
            tag = "missing" if outputs.get(key) is None else "unparsable" if not cand else \
                "correct" if each["Bleu_1"][k] > 1e-3 else "wrong_content"
            tags[tag] += 1
            samples.append({"question_id": record.question_id, "output": outputs.get(key), "parsed": cand or None,
                            "score": value, "tag": tag})
        score = 100.0 * sum(corpus[m] for m in METRICS) / len(METRICS) if records else 0.0
        return TaskScore(score=score, n=len(records), tags=tags, samples=samples)


SCORERS.register(CaptionScorer())
