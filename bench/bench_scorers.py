"""Throughput of VQA soft-accuracy scoring: synthetic predictions with 10 human answers each.

Usage: python bench/bench_scorers.py [--n N] [--vocab V] [--seed S]

The answers come from a vocabulary with realistic surface variation ("Two", "2.",
"the dog"), so the memoised normalisation sees repeats the way real VQA answers do;
one prediction in ten is a never-seen string, so the uncached path is timed too.
Only scoring is timed (``score_task``: id matching, scorer, per-sample rows), not the
data generation.
"""

from __future__ import annotations

import argparse
import random
import time

from coin.scoring.scorers import score_task

_BASE = ["yes", "no", "two", "3", "red", "the dog", "a cat", "unanswerable", "3.5", "don't know"]
_VARIANTS = [str.upper, str.title, lambda s: s + ".", lambda s: s + "!", lambda s: " " + s + " "]


def make_data(n: int, vocab: int, seed: int) -> tuple[dict[int, str], list[dict]]:
    """``n`` records with 10 answers each and one prediction per record."""
    rng = random.Random(seed)
    words = _BASE + [f"word{k}" for k in range(vocab - len(_BASE))]

    def surface() -> str:
        w = rng.choice(words) if rng.random() < 0.5 else rng.choice(_BASE)
        return rng.choice(_VARIANTS)(w) if rng.random() < 0.3 else w

    records, outputs = [], {}
    for qid in range(n):
        answers = [surface() for _ in range(10)]
        records.append(
            {"question_id": qid, "image": "x.jpg", "text": "q?", "answer": answers[0], "answers": answers}
        )
        u = rng.random()
        if u < 0.55:  # agrees with an annotator, maybe in another surface form
            outputs[qid] = rng.choice(answers)
        elif u < 0.65:  # right content, sentence format (tag wrong_format)
            outputs[qid] = f"The answer is {rng.choice(answers)}."
        elif u < 0.75:  # a string never seen before: a cache miss
            outputs[qid] = f"Maybe {qid} of them, I think?"
        else:
            outputs[qid] = surface()
    return outputs, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="number of predictions")
    parser.add_argument("--vocab", type=int, default=2000, help="distinct answer words")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    outputs, records = make_data(args.n, args.vocab, args.seed)
    start = time.perf_counter()
    result = score_task("vqa", outputs, records)
    elapsed = time.perf_counter() - start
    print(f"scored {result.n:,} VQA samples (10 answers each) in {elapsed:.2f} s: "
          f"{result.n / elapsed:,.0f} samples/s; score {result.score:.2f}; tags {result.tags}")


if __name__ == "__main__":
    main()
