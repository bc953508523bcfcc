"""SEFE's Answer Style Diversification (``asd``) and SEFE itself (``sefe`` = ASD's data + RegLoRA).

Over four CoIN-Synth tasks of three answer forms (ScienceQA's letters, VQAv2's phrases with yes/no
among them, Grounding's boxes, OCR-VQA's phrases): the share converted is the option's, split
equally over the styles a task lacks; each converted sample is well formed for its style and
points at the true answer; the choice is a function of (seed, task, id); test items never change;
and ``sefe``'s loss is RegLoRA's.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, get_peft_model

from coin.adapters.merge import lora_layers
from coin.benchmarks.synth.generator.makers import MAKERS
from coin.config_load import from_dict
from coin.data.sample import Sample
from coin.methods import METHODS, StageContext, build_method
from coin.methods.asd import RFP, STYLES, ASDOptions, diversify, plan
from coin.tasks import get_task

TASKS = ["ScienceQA", "VQAv2", "Grounding", "OCR-VQA"]
OWN = {"ScienceQA": {"mcq"}, "Grounding": {"short"}}  # the rest: short, and yn too for a yes/no answer
OPTION = re.compile(r"^([A-Z])\. (.*)$")


def _samples(task: str, n: int = 60) -> list[Sample]:
    """``n`` CoIN-Synth training samples of ``task`` (its maker, its Original prompt)."""
    spec, out = get_task(task), []
    for i in range(n):
        ex = MAKERS.get(task)(random.Random(f"asd-test/{task}/{i}"))
        line = spec.instruction
        prompt = line.format(ex.detail) if "{}" in line else f"{ex.question}\n{line}"
        out.append(Sample(f"{task}-train-{i:06d}", task, f"/img/{task}/{i}.png", prompt, ex.answer))
    return out


def _truth(s: Sample) -> str:
    """The original sample's answer as text (a ScienceQA letter's option text)."""
    if get_task(s.task).answer_form == "letter":
        options = dict(m.groups() for m in map(OPTION.match, s.prompt.split("\n")) if m)
        return options[s.answer]
    return s.answer


def _own(s: Sample) -> set[str]:
    return OWN.get(s.task, {"yn", "short"} if s.answer.lower() in ("yes", "no") else {"short"})


def _check(style: str, old: Sample, new: Sample) -> None:
    """``new`` is ``old`` written well in ``style``: its RFP last, its answer pointing at the truth."""
    truth = _truth(old)
    assert (new.id, new.task, new.image, new.turns) == (old.id, old.task, old.image, old.turns)
    lines = new.prompt.split("\n")
    assert lines[-1] == RFP[style], (style, new.prompt)
    assert style not in _own(old)
    box = get_task(old.task).answer_form == "box"
    if style == "yn":
        assert new.answer in ("Yes", "No")
        m = re.search(r"Does the region (\[.*?\]) show" if box else r'Is the answer "(.*)"\?', new.prompt)
        assert m, new.prompt
        assert (new.answer == "Yes") == (m.group(1) == truth), (new.prompt, new.answer, truth)
    elif style == "mcq":
        options = [m.groups() for m in map(OPTION.match, lines) if m]
        letters = [k for k, _ in options]
        assert letters == list("ABCD"[: len(options)]) and 2 <= len(options) <= 4
        assert new.answer in letters
        texts = dict(options)
        assert texts[new.answer] == truth
        assert len({t.lower() for t in texts.values()}) == len(texts)  # no distractor repeats the answer
    elif style == "short":
        assert new.answer == truth and not any(OPTION.match(ln) for ln in lines)
    else:  # brief, detail: a sentence holding the answer (Grounding: the region's description)
        assert new.answer.endswith(".") and len(new.answer.split()) > 3
        if box:
            assert truth in new.prompt and old.prompt.rsplit(": ", 1)[1] in new.answer
        else:
            assert truth.lower() in new.answer.lower()


@pytest.mark.parametrize("share", [0.2, 0.5])
@pytest.mark.parametrize("task", TASKS)
def test_the_converted_share_matches_the_option_split_equally_over_the_missing_styles(task, share):
    samples = _samples(task)
    done = plan(samples, ASDOptions(share=share), 0, task)
    assert len(done) == round(share * len(samples))
    counts = Counter(style for style, _ in done.values())
    lacking = set(STYLES) - OWN.get(task, {"short"})
    assert set(counts) <= lacking and max(counts.values()) - min(counts[s] for s in lacking) <= 1, counts
    out = diversify(samples, ASDOptions(share=share), 0, task)
    assert len(out) == len(samples)
    assert all(out[i] is samples[i] for i in range(len(samples)) if i not in done)  # the rest untouched
    assert all(out[i] != samples[i] for i in done)


def test_share_0_converts_nothing_and_share_1_everything():
    for task in TASKS:
        samples = _samples(task, 24)
        assert diversify(samples, ASDOptions(share=0.0), 0, task) == samples
        everything = plan(samples, ASDOptions(share=1.0), 0, task)
        assert sorted(everything) == list(range(24))


@pytest.mark.parametrize("task", TASKS)
def test_every_converted_sample_is_well_formed_for_its_style(task):
    samples = _samples(task)
    done = plan(samples, ASDOptions(share=1.0), 0, task)
    for i, (style, new) in done.items():
        _check(style, samples[i], new)
    yn = [new.answer for style, new in done.values() if style == "yn"]
    assert set(yn) == {"Yes", "No"}  # the true answer and a distractor are both proposed
    letters = {new.answer for style, new in done.values() if style == "mcq"}
    if task != "ScienceQA":  # ScienceQA is multiple choice already
        assert len(letters) >= 2  # the answer's place is shuffled


def test_only_chosen_styles_are_used_and_options_bound_the_choices():
    samples = _samples("OCR-VQA")
    done = plan(samples, ASDOptions(share=0.5, styles=["mcq", "yn"], options=3), 0, "OCR-VQA")
    assert {style for style, _ in done.values()} == {"mcq", "yn"}
    for i, (style, new) in done.items():
        _check(style, samples[i], new)
        if style == "mcq":
            assert sum(bool(OPTION.match(ln)) for ln in new.prompt.split("\n")) <= 3


def test_the_conversion_is_a_function_of_seed_task_and_id():
    samples = _samples("VQAv2")
    first = diversify(samples, ASDOptions(), 0, "VQAv2")
    assert diversify(samples, ASDOptions(), 0, "VQAv2") == first  # a resumed run rebuilds the same data
    shuffled = samples[:]
    random.Random(3).shuffle(shuffled)
    by_id = {s.id: s for s in diversify(shuffled, ASDOptions(), 0, "VQAv2")}
    assert [by_id[s.id] for s in samples] == first  # the list's order changes nothing
    chosen = {samples[i].id for i in plan(samples, ASDOptions(), 0, "VQAv2")}
    assert {samples[i].id for i in plan(samples, ASDOptions(), 1, "VQAv2")} != chosen  # another seed, another choice
    renamed = [Sample(s.id, "OtherTask", s.image, s.prompt, s.answer) for s in samples]  # a task of coin's plugins
    assert {samples[i].id for i in plan(renamed, ASDOptions(), 0, "OtherTask")} != chosen


def test_the_method_hook_converts_the_task_and_keeps_the_other_tasks_data():
    data = {t: _samples(t, 20) for t in TASKS}
    frozen = {t: list(v) for t, v in data.items()}
    for name in ("asd", "sefe"):
        method = build_method(name)
        ctx = StageContext(vlm=None, task="VQAv2", stage=1, tasks=TASKS, train_data=data, seed=5)
        assert method.train_data(ctx, data["VQAv2"]) == diversify(data["VQAv2"], ASDOptions(), 5, "VQAv2")
        assert data == frozen  # nothing stored for another task, or the input list, changed
        assert METHODS.get(name).eval_model is METHODS.get("sequential").eval_model  # tests go in as they are


def test_a_run_trains_on_converted_samples_and_tests_on_the_original_items(micro_config, tmp_path, monkeypatch):
    """A micro CoIN-Synth run of ``sefe`` with share 1: every training prompt is in a style its task
    lacks, every test prompt is the test file's own text with the task's format line."""
    import coin.engine.run as engine
    from coin.engine import evaluate
    from coin.engine.run import run

    trained, tested = {}, {}
    real_train, real_eval = engine.train_stage, evaluate.eval_samples

    def train_stage(ctx, samples, *args, **kwargs):
        trained[ctx.task] = list(samples)
        return real_train(ctx, samples, *args, **kwargs)

    def eval_samples(records):
        out = real_eval(records)
        for r, s in zip(records, out):
            tested.setdefault(r.task, []).append((r, s))
        return out

    monkeypatch.setattr(engine, "train_stage", train_stage)
    monkeypatch.setattr(evaluate, "eval_samples", eval_samples)
    micro_config.update(method="sefe", method_options={"share": 1.0})
    micro_config["eval"]["zero_shot"] = False
    run(from_dict(micro_config), tmp_path / "sefe", progress=False, log=lambda *a: None)
    assert sorted(trained) == ["Grounding", "ImageNet"]
    for task, samples in trained.items():
        assert len(samples) == 24
        assert all(s.prompt.split("\n")[-1] in {RFP[st] for st in ("yn", "mcq", "brief", "detail")} for s in samples)
    assert sorted(tested) == ["Grounding", "ImageNet"]
    for task, pairs in tested.items():
        assert len({r.question_id for r, _ in pairs}) == 8
        for record, sample in pairs:
            assert sample.prompt == record.text.replace("<image>\n", "").strip()
            assert record.text.split("\n")[-1] not in {RFP[st] for st in ("yn", "brief", "detail")}
        line = get_task(task).instruction
        assert all(s.prompt.endswith(line) or "{}" in line for _, s in pairs)


# --------------------------------------------------------------------------- sefe = ASD + RegLoRA


class _Stack(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.ModuleList(torch.nn.Linear(6, 5, bias=False) for _ in range(2))

    def forward(self, x):
        for f in self.fc:
            x = x + f(x)[..., :1]
        return x


def test_sefe_adds_the_same_loss_term_as_reglora_from_the_same_state():
    torch.manual_seed(0)
    model = get_peft_model(_Stack(), LoraConfig(r=2, lora_alpha=4, target_modules=["0", "1"]))
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B["default"].weight.normal_()
    options = {"lambda_": 7.0, "top": 0.1}
    reglora, sefe = build_method("reglora", options), build_method("sefe", {**options, "share": 0.3})
    reglora.records[0] = {name: torch.tensor([0, 3, 7], dtype=torch.int32) for name in lora_layers(model)}
    reglora.last_stage = 0
    sefe.load_state_dict(reglora.state_dict())  # a SEFE run resumed from a RegLoRA-shaped state
    ctx = SimpleNamespace(vlm=SimpleNamespace(model=model))
    base = torch.tensor(1.25)
    losses = [m.loss(ctx, {}, None, base) for m in (reglora, sefe)]
    assert losses[0].item() > base.item()
    assert losses[1].item() == pytest.approx(losses[0].item(), rel=1e-7)
    assert sefe.last_terms() == reglora.last_terms()
    assert METHODS.get("sefe").check_run is not None and sefe.opts.share == 0.3 and sefe.opts.lambda_ == 7.0


def test_options_name_their_keys():
    assert build_method("asd").opts == ASDOptions()
    assert METHODS.get("asd").validate({"share": 1.5, "styles": ["essay"], "options": 1}) == [
        "method_options.share must be in [0, 1], got 1.5",
        "method_options.styles must be a non-empty list of yn, mcq, short, brief, detail, got ['essay']",
        "method_options.options must be in [2, 26], got 1"]
    problems = METHODS.get("sefe").validate({"share": -0.1, "top": 0, "shar": 1})
    assert problems[0].startswith("unknown key 'method_options.shar' (did you mean 'method_options.share'?)")
    assert "method_options.share must be in [0, 1], got -0.1" in problems
    assert "method_options.top must be in (0, 1], got 0.0" in problems
