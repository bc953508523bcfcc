"""CoIN-Synth: deterministic, in CoIN's formats, and every answer scores with its task's scorer."""

import hashlib
import json
from pathlib import Path

import pytest

from coin.benchmarks.synth.generator import generate
from coin.benchmarks.synth.generator.makers import MAKERS
from coin.scoring.scorers import score_sample
from coin.tasks import ORDERS, get_task


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("s") / "synth", seed=7, n_train=30, n_test=30, n_pretrain=20)


def test_same_seed_same_bytes_other_seed_differs(synth, tmp_path):
    again = generate(tmp_path / "again", seed=7, n_train=30, n_test=30, n_pretrain=20)
    assert _digest(again) == _digest(synth)
    other = generate(tmp_path / "other", seed=8, n_train=30, n_test=30, n_pretrain=20)
    assert _digest(other) != _digest(synth)


def _load(root, task, split):
    return json.loads((root / "Instructions_Original" / get_task(task).folder / f"{split}.json").read_text())


@pytest.mark.parametrize("task", ORDERS["paper"])
def test_formats(synth, task):
    spec = get_task(task)
    train, test = _load(synth, task, "train"), _load(synth, task, "test")
    assert len(train) == 30 and len(test) == 30
    for r in train:
        assert set(r) == {"id", "image", "conversations"}
        human, gpt = r["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>\n")
        assert gpt["from"] == "gpt" and gpt["value"]
        assert (synth / "images" / r["image"]).is_file()
    for r in test:
        assert {"question_id", "image", "text", "answer"} <= set(r)
        last = r["text"].split("\n")[-1]
        if "{}" in spec.instruction:
            assert last.startswith(spec.instruction.split("{}")[0])
        else:
            assert last == spec.instruction
    if task == "Grounding":
        for r in test:
            box = json.loads(r["answer_bbox"])
            assert len(box) == 4 and all(0 <= v <= 1 for v in box)
            assert box[0] < box[2] and box[1] < box[3]
            assert r["answer_bbox"] == r["answer"] and r["size"] == [64, 64]
            assert all(len(s.split(".")[1]) == 2 for s in r["answer_bbox"].strip("[]").split(", "))
    if task in ("TextVQA", "VQAv2"):
        assert all(len(r["answers"]) == 10 for r in test)
        assert any(len(set(r["answers"])) > 1 for r in test), "annotators never disagree"
    if task == "TextVQA":
        assert all("\nReference OCR token: " in r["text"] for r in test)
    if task == "ScienceQA":
        assert all(r["answer"] in "ABCD" and "\nA. " in r["text"] for r in test)


def test_vizwiz_has_unanswerable_questions(synth):
    answers = [r["answer"] for r in _load(synth, "VizWiz", "test")]
    assert 0 < answers.count("unanswerable") < len(answers)


@pytest.mark.parametrize("task", ORDERS["paper"])
def test_every_answer_scores_as_correct_with_its_scorer(synth, task):
    spec = get_task(task)
    for r in _load(synth, task, "test"):
        s = score_sample(spec.scorer, r["answer"], r)
        assert s.score == 1.0 and s.tag == "correct", (r, s)


def test_answer_forms_are_distinct_enough(synth):
    # a caption-style answer must not pass the short-answer scorers (zero-shot stays low)
    r = _load(synth, "ImageNet", "test")[0]
    assert score_sample("classification", f"a large red {r['answer']} at top left.", r).score == 0.0


def test_captions_describe_objects_in_reading_order(synth):
    caps = json.loads((synth / "pretrain" / "train.json").read_text())
    assert len(caps) == 20
    text = " ".join(c["conversations"][1]["value"] for c in caps)
    assert "shape" in text
    assert set(MAKERS) == set(ORDERS["paper"])


def test_the_eight_tasks_files_are_pinned(tmp_path):
    """The records of a small CoIN-Synth, pinned: a maker, an instruction line or the default task list drifting
    changes every run's data (the PNGs are left out: their bytes depend on the zlib build)."""
    root = generate(tmp_path / "s", seed=1, n_train=3, n_test=2, n_pretrain=2)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.json")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    assert h.hexdigest()[:16] == "e088f3172c6f262e"
    assert json.loads((root / "MANIFEST.json").read_text())["tasks"] == list(ORDERS["paper"])


@pytest.fixture
def scratch_registries():
    """Tasks and makers registered in a test are gone after it."""
    from coin.tasks import TASKS

    with TASKS.scratch(), MAKERS.scratch():
        yield


def test_a_plugin_registers_a_maker_from_its_own_file(scratch_registries, tmp_path):
    from coin.benchmarks.synth.generator import world as w
    from coin.benchmarks.synth.generator.makers import Example, synth_maker
    from coin.tasks import TASKS, TaskSpec

    TASKS.register(TaskSpec(name="Colour", folder="ColourTask", answer_form="phrase", scorer="exact",
                            instruction="Answer with one colour.", max_new_tokens=8))

    @synth_maker("Colour")
    def colour(rng):
        obj = w.sample_objects(rng, 1)[0]
        return Example(w.Scene(background="gray", objects=[obj]), "Which colour is the shape?", obj.color)

    root = generate(tmp_path / "s", seed=0, n_train=3, n_test=2, n_pretrain=0, tasks=["Colour"])
    test = json.loads((root / "Instructions_Original" / "ColourTask" / "test.json").read_text())
    assert [r["text"] for r in test] == ["Which colour is the shape?\nAnswer with one colour."] * 2
    assert all(score_sample("exact", r["answer"], r).score == 1.0 for r in test)
    assert (root / "images" / test[0]["image"]).is_file()
    default = generate(tmp_path / "d", seed=0, n_train=1, n_test=1, n_pretrain=0)
    assert json.loads((default / "MANIFEST.json").read_text())["tasks"] == list(ORDERS["paper"])  # only when named
    with pytest.raises(KeyError, match="unknown CoIN-Synth task 'Colr'. Did you mean 'Colour'"):
        generate(tmp_path / "x", n_train=1, n_test=1, n_pretrain=0, tasks=["Colr"])
