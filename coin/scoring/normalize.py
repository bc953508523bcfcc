"""The VQA / EvalAI answer normalisation, so our VQA numbers mean what published ones mean.

This follows the official VQA evaluation (``vqaEval.py``, also used by EvalAI and by
LLaVA's TextVQA evaluator): lower-case, punctuation removal, number words to digits,
articles dropped, missing apostrophes restored ("dont" -> "don't"), whitespace collapsed.

Deliberate details, each faithful to what the published numbers used:

- A period is removed unless a digit follows it, so "3.5" and ".5" keep theirs while
  "yes." and "2." lose theirs. (The official regex meant "not between digits" but its
  look-behind is mistyped; everyone's numbers come from the behaviour, not the intent.)
- A punctuation mark next to a space is deleted, otherwise it becomes a space
  ("a-b" -> "a b", "a - b" -> "a b"); when the text has a digit-comma-digit anywhere
  ("1,000") every mark is deleted, so "1,000" -> "1000".
- ``:`` and ``'`` are not punctuation here (as in the original), so "don't" survives.
- Differences: we always normalise (the original skipped the ground truth when all
  annotators agreed, which only matters for unnormalised ground truth); the original's
  three capitalised contraction keys ("Im", "Ive", "Id've") could never match after
  lower-casing and are left out; its 32-replacement cap on periods is dropped.

Results are memoised (answers repeat a lot: "yes", "no", "2"), which is what makes
scoring a million VQA samples take seconds.

Which normaliser a task uses is part of its protocol (``coin.tasks.protocol_sets``), so each
one is registered by name in ``NORMALIZERS``:

- ``vqa``: the rules above (``vqaEval.py``), coin's ``strict`` protocols;
- ``m4c``: the m4c ``EvalAIAnswerProcessor`` that TextVQA's evaluation (LLaVA's and
  CoIN's ``m4c_evaluator.py``) uses. Before the rules above it lower-cases, *deletes*
  every comma and question mark and splits ``'s`` off its word, so "red,white" gives
  "redwhite" (``vqa``: "red white") and "dog's" gives "dog 's" (``vqa``: "dog's").
  Its period rule is the same mistyped one; its ``re.sub(..., re.UNICODE)`` passes the
  flag as a count, capping period removals at 32, which we drop;
- ``lower``: case-insensitive comparison only (CoIN's VQAv2, VizWiz and OCR-VQA
  evaluation compared ``pred.upper() == answer.upper()`` or ``.lower()``; we lower-case,
  which differs only for a few non-ASCII letters such as "ß") after stripping whitespace;
- ``gqa``: CoIN's ``convert_gqa_for_eval.py``: trailing periods removed and lower-cased
  (its leading-space cut is covered by stripping whitespace);
- ``strip``: surrounding whitespace removed, nothing else (case-sensitive).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable

from coin.registry import Registry

__all__ = ["NORMALIZERS", "normalize_answer", "normalize_m4c", "get_normalizer"]

Normalizer = Callable[[str], str]
# each registers under its function's name; UCIT's ``upper`` lives with its benchmark
NORMALIZERS: Registry[Normalizer] = Registry("normaliser", builtins=("coin.benchmarks",))

_NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip

_ARTICLES = frozenset({"a", "an", "the"})

_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd",
    "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip

# Number words, articles and contractions in one table: each word maps to its
# replacement, "" meaning "drop it". Number words are mapped before the article test
# and contractions after, as in the original; no key is in two tables, so one lookup
# is equivalent.
_WORD_MAP: dict[str, str] = {**_CONTRACTIONS, **_NUMBERS, **{a: "" for a in _ARTICLES}}

_PUNCT = ";/[]\"{}()=+\\_-><@`,?!"
_PUNCT_SET = frozenset(_PUNCT)
_ANY_PUNCT = re.compile("[" + re.escape(_PUNCT) + "]")
_DELETE_PUNCT = str.maketrans("", "", _PUNCT)
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD = re.compile(r"\.(?!\d)")  # a period not followed by a digit (see module doc)
_SIMPLE = re.compile(r"[a-z0-9 ]*")  # nothing to strip: only the word pass is needed


def _strip_punctuation(text: str) -> str:
    """Delete or space out punctuation exactly as the VQA evaluation does."""
    if _ANY_PUNCT.search(text):
        if _DIGIT_COMMA_DIGIT.search(text):
            text = text.translate(_DELETE_PUNCT)
        else:
            out = text
            for p in _PUNCT_SET.intersection(text):
                # decided on the text before any replacement, as in the original
                spaced = (p + " ") in text or (" " + p) in text
                out = out.replace(p, "" if spaced else " ")
            text = out
    if "." in text:
        text = _PERIOD.sub("", text)
    return text


@NORMALIZERS.register
@lru_cache(maxsize=1 << 18)
def vqa(text: str) -> str:
    """Return the VQA-normalised form of ``text`` (see the module docstring)."""
    text = text.lower()
    if not _SIMPLE.fullmatch(text):
        text = _strip_punctuation(text.replace("\n", " ").replace("\t", " "))
    words = []
    for word in text.split():
        word = _WORD_MAP.get(word, word)
        if word:
            words.append(word)
    return " ".join(words)


@NORMALIZERS.register
@lru_cache(maxsize=1 << 18)
def m4c(text: str) -> str:
    """TextVQA's m4c ``EvalAIAnswerProcessor``: commas and "?" deleted, "'s" split, then the VQA rules."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    return vqa(text)


normalize_answer = vqa  # the names the rest of coin calls them by
normalize_m4c = m4c


@NORMALIZERS.register
def lower(text: str) -> str:
    return text.strip().lower()


@NORMALIZERS.register
def gqa(text: str) -> str:
    return text.strip().rstrip(".").lower()


@NORMALIZERS.register
def strip(text: str) -> str:
    return text.strip()


def get_normalizer(name: str) -> Normalizer:
    """The normaliser registered as ``name`` (an unknown name lists the choices)."""
    return NORMALIZERS.get(name)
