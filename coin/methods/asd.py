"""SEFE's Answer Style Diversification (ASD), and ``sefe``: ASD's data with RegLoRA's penalty.

SEFE (Chen et al., ICML 2025, arXiv 2505.02486) splits forgetting in two: *superficial*, where a
model still knows an earlier task but answers it in a later task's style (a sentence where a
letter was due), and *essential*, a real loss of knowledge. ASD is its data half, against the
first: every task's training set is brought to the same mix of five answer styles, so no task
teaches "this is how one answers" on its own. RegLoRA (``coin.methods.reglora``) is the other
half; ``sefe`` below is the two together, the method of SEFE's tables.

What SEFE says (paper, and its release jinpeng0528/SEFE: README and ``CoIN-ASD/prompts/``):

- five styles: yes/no, multiple choice, short answer, brief explanation or description, detailed
  explanation or description; each question gets a response format prompt (RFP) for its style;
- X% of each task's training samples (X = 20 by default, the best of its ablation) are converted,
  in equal parts, into the four styles the task does not have; the rest keep their own style, so
  the training set keeps its size; test sets are not converted;
- the conversion mixes fixed rules with an MLLM: the released prompts ask a model for three
  plausible distractors (multiple choice: the answer and three distractors), for one distractor
  (yes/no questions, "two-choice"), for a brief (about 20 words) or a detailed (about 50 words)
  explanation of the given answer, and, for Grounding, for a description of the boxed object.

What is ours (coin runs offline, so every conversion is a rule; nothing here asks a model):

- distractors are other answers of the same task's training set: first those given to questions
  that open with the same three words (VQA's question-type idea: "what color is" draws colours),
  then any; a multiple-choice task's (ScienceQA's) own other options first;
- yes/no: ``Is the answer "X"?`` where X is the true answer or a distractor, each with chance 1/2;
  the answer is ``Yes`` exactly when X is the true answer. Grounding: ``Does the region [box]
  show <description>?`` with the true box or another box of the task;
- multiple choice: the true answer and up to ``options - 1`` distractors in a seeded order,
  lettered A, B, ...; the answer is the true answer's letter. Grounding: the options are boxes;
- short answer: the question without its options, answered with the option's text (a
  multiple-choice task); the other tasks already answer short;
- brief and detailed: template sentences that state the answer (``Red. The image shows that the
  answer is red.``); they teach the style of an explained answer but carry no explanation, which
  SEFE's model-written ones do. Grounding: the region's description, in the same two lengths;
- the RFPs for yes/no, brief and detailed are ours; multiple choice and short answer use
  LLaVA-1.5's lines (CoIN's own ScienceQA and VQA lines);
- a sample's own style: multiple choice when its answer is one of its lettered options, yes/no
  and short when its answer is yes or no, short otherwise; a sample is converted only into styles
  it lacks, each converted sample to the style least used so far among those it can take.

Which samples convert is a pure function of (run seed, task, sample id): the same after a resume,
whatever the order of the list, with no state to save. ASD changes only the training data.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from dataclasses import dataclass, field

from coin.data.sample import Sample
from coin.methods.base import METHODS, Method, StageContext
from coin.methods.reglora import RegLoRA, RegLoRAOptions
from coin.tasks.instructions import split_prompt
from coin.tasks.rules import LETTER, SHORT
from coin.tasks.spec import TASKS

STYLES = ("yn", "mcq", "short", "brief", "detail")  # SEFE's five answer styles
RFP = {  # the response format prompt that ends a question of each style
    "yn": "Answer the question with yes or no.",  # ours
    "mcq": LETTER,  # LLaVA-1.5's multiple-choice line (CoIN's ScienceQA line)
    "short": SHORT,  # LLaVA-1.5's short-answer line (CoIN's VQA line)
    "brief": "Answer the question and explain your answer briefly.",  # ours
    "detail": "Answer the question and explain your answer in detail.",  # ours
}
YES, NO = "Yes", "No"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_OPTION = re.compile(r"^([A-Z])[.)]\s+(.*\S)\s*$")


@dataclass
class ASDOptions:
    """``method_options`` of ASD."""

    share: float = 0.2  # X: share of each task's training samples converted to other styles (SEFE: 20%)
    # the styles a sample may be converted into, split equally (SEFE: all five, each sample into those it lacks)
    styles: list[str] = field(default_factory=lambda: list(STYLES))
    options: int = 4  # options of a multiple-choice question: the answer and distractors (SEFE: 1 + 3)

    def check(self) -> list[str]:
        out = []
        if not 0 <= self.share <= 1:
            out.append(f"share must be in [0, 1], got {self.share}")
        bad = [s for s in self.styles if s not in STYLES]
        if bad or not self.styles:
            out.append(f"styles must be a non-empty list of {', '.join(STYLES)}, got {self.styles!r}")
        elif len(set(self.styles)) != len(self.styles):
            out.append(f"styles lists a style twice: {self.styles!r}")
        if not 2 <= self.options <= len(LETTERS):
            out.append(f"options must be in [2, {len(LETTERS)}], got {self.options}")
        return out


# ----------------------------------------------------------------------------- one sample
@dataclass(frozen=True)
class _Parts:
    """A training sample taken apart: the question without its RFP, the true answer as text."""

    stem: str  # the question (its context and OCR lines too), without options and format line
    truth: str  # the answer as text: an option's text for a lettered answer
    own: frozenset  # the styles the sample already has
    options: tuple = ()  # a multiple-choice sample's option texts, in order
    description: str | None = None  # Grounding: the referring expression, whose box is ``truth``


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())


def _parts(s: Sample) -> _Parts | None:
    """``s`` taken apart, or None when its prompt has no shape ASD can rewrite."""
    if s.answer is None:
        return None
    known = s.task in TASKS
    try:
        body, description = split_prompt(s.prompt, s.task) if known else (_body(s.prompt), None)
    except ValueError:  # a registered task's prompt without its format line: leave it as it is
        return None
    if description is not None:  # Grounding: the prompt is the description, the answer its box
        if not known or TASKS.get(s.task).answer_form != "box":
            return None
        return _Parts(stem="", truth=s.answer.strip(), own=frozenset({"short"}), description=description.strip())
    lines = [ln for ln in body.split("\n") if ln.strip()]
    opts = [(m.group(1), m.group(2)) for m in map(_OPTION.match, lines) if m]
    letters = [k for k, _ in opts]
    if opts and letters == list(LETTERS[: len(opts)]) and s.answer.strip() in letters:
        stem = "\n".join(ln for ln in lines if not _OPTION.match(ln))
        texts = tuple(t for _, t in opts)
        return _Parts(stem=stem, truth=texts[letters.index(s.answer.strip())], own=frozenset({"mcq"}),
                      options=texts)
    if not lines:
        return None
    own = {"yn", "short"} if _norm(s.answer) in ("yes", "no") else {"short"}
    return _Parts(stem="\n".join(lines), truth=s.answer.strip(), own=frozenset(own))


def _body(prompt: str) -> str:
    """A plugin task's question: the prompt without its last line when that line is not an option."""
    lines = prompt.strip().split("\n")
    return "\n".join(lines[:-1]) if len(lines) > 1 and not _OPTION.match(lines[-1]) else prompt.strip()


def _kind(stem: str) -> str:
    """The question's first three words (VQA's question types: "what color is", "how many")."""
    first = stem.split("\n", 1)[0]
    return " ".join(re.findall(r"[a-z0-9']+", first.lower())[:3])


def _question(stem: str) -> str | None:
    """The stem's question line (the first ending in '?'), for the detailed template."""
    return next((ln.strip() for ln in stem.split("\n") if ln.strip().endswith("?")), None)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


class _Pool:
    """The task's distinct answers, whole and by question kind, in a fixed (sorted) order."""

    def __init__(self, parts: list[_Parts | None]) -> None:
        by_kind: dict[str, dict[str, str]] = {}
        for p in parts:
            if p is None or p.options:
                continue
            for key in ("<box>",) if p.description is not None else (_kind(p.stem), "<all>"):
                seen = by_kind.setdefault(key, {})
                seen[_norm(p.truth)] = min(seen.get(_norm(p.truth), p.truth), p.truth)
        self.lists = {k: sorted(v.values()) for k, v in by_kind.items()}

    def distractors(self, p: _Parts, rng: random.Random, k: int) -> list[str]:
        """Up to ``k`` answers other than ``p``'s: its own options first, then its kind's answers, then any."""
        truth, out = _norm(p.truth), []
        if truth in ("yes", "no"):  # the one distractor of a yes/no answer is its opposite, written alike
            other = "no" if truth == "yes" else "yes"
            return [other if p.truth.islower() else _cap(other)][:k]
        if p.options:  # a multiple-choice sample's own other options
            _draw(list(p.options), rng, k, {truth}, out)
            return out
        pools = [self.lists.get("<box>", [])] if p.description is not None else \
            [self.lists.get(_kind(p.stem), []), self.lists.get("<all>", [])]
        for pool in pools:  # never "yes" or "no" as the distractor of another answer
            _draw(pool, rng, k, {truth, "yes", "no"}, out)
        return out


def _draw(pool: list[str], rng: random.Random, k: int, exclude: set[str], out: list[str]) -> None:
    """Add to ``out`` seeded picks from ``pool`` until it holds ``k`` (none excluded, none twice)."""
    taken = exclude | {_norm(x) for x in out}
    if len(pool) <= 64:  # small: shuffle a filtered copy
        rest = [x for x in pool if _norm(x) not in taken]
        rng.shuffle(rest)
        out += rest[: k - len(out)]
        return
    for _ in range(32 * k):  # large (e.g. OCR-VQA's titles): rejection, no pass over the pool
        if len(out) >= k:
            return
        x = pool[rng.randrange(len(pool))]
        if _norm(x) not in taken:
            out.append(x)
            taken.add(_norm(x))


def _convert(s: Sample, p: _Parts, style: str, pool: _Pool, rng: random.Random, options: int) -> Sample | None:
    """``s`` asked and answered in ``style``, or None when the rules cannot (no distractor to offer)."""
    if p.description is not None:
        return _convert_box(s, p, style, pool, rng, options)
    stem = p.stem
    if style == "yn":
        wrong = pool.distractors(p, rng, 1)
        if not wrong:
            return None
        true = rng.random() < 0.5
        shown = p.truth if true else wrong[0]
        return _as(s, f'{stem}\nIs the answer "{shown}"?', style, YES if true else NO)
    if style == "mcq":
        choices = [p.truth] + pool.distractors(p, rng, options - 1)
        if len(choices) < 2:
            return None
        rng.shuffle(choices)
        lines = [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
        return _as(s, "\n".join([stem, *lines]), style, LETTERS[choices.index(p.truth)])
    if style == "short":
        return _as(s, stem, style, p.truth)
    if style == "brief":
        return _as(s, stem, style, f"{_cap(p.truth)}. The image shows that the answer is {p.truth}.")
    q = _question(stem)
    asked = f'The question asks: "{q}" ' if q else ""
    return _as(s, stem, style, f"{_cap(p.truth)}. {asked}Looking carefully at the part of the image the question "
                               f"is about, the answer to it is {p.truth}.")


def _convert_box(s: Sample, p: _Parts, style: str, pool: _Pool, rng: random.Random, options: int) -> Sample | None:
    box, what = p.truth, p.description
    if style == "yn":
        wrong = pool.distractors(p, rng, 1)
        if not wrong:
            return None
        true = rng.random() < 0.5
        return _as(s, f"Does the region {box if true else wrong[0]} show {what}?", style, YES if true else NO)
    if style == "mcq":
        choices = [box] + pool.distractors(p, rng, options - 1)
        if len(choices) < 2:
            return None
        rng.shuffle(choices)
        lines = [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
        return _as(s, "\n".join([f"Which region shows {what}?", *lines]), style, LETTERS[choices.index(box)])
    if style == "brief":
        return _as(s, f"What is in the region {box}?", style, f"The region shows {what}.")
    if style == "detail":
        return _as(s, f"What is in the region {box}?", style,
                   f"The region {box} is given by its left, top, right and bottom edges as shares of the image's "
                   f"width and height. Inside it, the image shows {what}.")
    return None  # a box is already the short answer


def _as(s: Sample, question: str, style: str, answer: str) -> Sample:
    prompt = f"{question}\n{RFP[style]}" if question else RFP[style]
    return dataclasses.replace(s, prompt=prompt, answer=answer)


# ----------------------------------------------------------------------------- a task's samples
def _rng(seed: int, task: str, sample_id: str, *more: object) -> random.Random:
    return random.Random(":".join(map(str, ("asd", seed, task, sample_id, *more))))


def plan(samples: list[Sample], opts: ASDOptions, seed: int, task: str) -> dict[int, tuple[str, Sample]]:
    """{index in ``samples``: (style, converted sample)} for the ``share`` of ``samples`` ASD converts.

    Samples are ranked by a number drawn from (seed, task, id), so the choice does not depend on
    the list's order; down that ranking, each sample that some style fits is converted into the
    style used least so far among those it lacks (ties: the order of ``opts.styles``), until
    round(share x n) are converted.
    """
    parts = [_parts(s) for s in samples]
    pool = _Pool(parts)
    want = round(opts.share * len(samples))
    order = sorted(range(len(samples)), key=lambda i: (_rng(seed, task, samples[i].id).random(), samples[i].id, i))
    used: Counter = Counter()
    out: dict[int, tuple[str, Sample]] = {}
    for i in order:
        if len(out) >= want:
            break
        p = parts[i]
        if p is None:
            continue
        targets = sorted((st for st in opts.styles if st not in p.own),
                         key=lambda st: (used[st], opts.styles.index(st)))
        for style in targets:
            new = _convert(samples[i], p, style, pool, _rng(seed, task, samples[i].id, style), opts.options)
            if new is not None:
                out[i], used[style] = (style, new), used[style] + 1
                break
    return out


def diversify(samples: list[Sample], opts: ASDOptions, seed: int, task: str) -> list[Sample]:
    """``samples`` in their order, the ``share`` ASD converts replaced by their converted forms."""
    done = plan(samples, opts, seed, task)
    return [done[i][1] if i in done else s for i, s in enumerate(samples)]


@METHODS.register
class ASD(Method):
    """SEFE's Answer Style Diversification: a share of each task's training data rewritten into other answer styles."""

    name = "asd"
    Options = ASDOptions
    supports_fsdp = True  # it only rewrites data

    def train_data(self, ctx: StageContext, samples: list) -> list:
        """The task's samples, ``share`` of them converted (seeded by run seed, task and sample id)."""
        return diversify(list(samples), self.opts, ctx.seed, ctx.task)


@dataclass
class SEFEOptions(RegLoRAOptions, ASDOptions):
    """``method_options`` of SEFE: ASD's and RegLoRA's keys together."""

    def check(self) -> list[str]:
        return ASDOptions.check(self) + RegLoRAOptions.check(self)


@METHODS.register
class SEFE(RegLoRA):
    """SEFE (Chen et al., ICML 2025): ASD's training data with RegLoRA's merge and penalty."""

    name = "sefe"
    Options = SEFEOptions

    def train_data(self, ctx: StageContext, samples: list) -> list:
        """As ``asd``; RegLoRA's own hooks (merge, records, penalty) are unchanged."""
        return diversify(list(samples), self.opts, ctx.seed, ctx.task)
