"""Instruction families: the exact strings, which ones are ours, and how a family rewrites prompts."""

from collections import Counter

import pytest

from coin.data.sample import Sample
from coin.tasks import ORDERS, TASKS, TaskSpec, Template
from coin.tasks import instructions
from coin.tasks.instructions import (FAMILIES, Family, apply_family, draw, get_family, ours, prompt_notes, rewrite,
                                     split_prompt, templates)

SHORT = "Answer the question using a single word or phrase."
LETTER = "Answer with the option's letter from the given choices directly."
GROUND = "Please provide the bounding box coordinate of the region this sentence describes: {}"

# The exact prompt each task produces per family (Original and Diverse are fixed; a change here is prompt drift).
QUESTION = {"ScienceQA": "Which is north?\nA. Ohio\nB. Texas", "TextVQA": "what brand?\nReference OCR token: NOKIA",
            "ImageNet": "What is the object in the image?", "GQA": "Is the sky dark?", "VizWiz": "What is this?",
            "VQAv2": "How many dogs?", "OCR-VQA": "Who wrote this book?"}
SNAPSHOT = {
    "original": {t: f"{q}\n{LETTER if t == 'ScienceQA' else SHORT}" for t, q in QUESTION.items()}
    | {"Grounding": GROUND.format("man on the left")},
    "diverse": {
        "ScienceQA": f"{QUESTION['ScienceQA']}\n{LETTER}",
        "TextVQA": f"{QUESTION['TextVQA']}\nCapture the essence of your response in a single word or a concise phrase.",
        "ImageNet": f"{QUESTION['ImageNet']}\nExpress your answer in a single word or a short, descriptive phrase.",
        "GQA": f"{QUESTION['GQA']}\nRespond to the question briefly, using only one word or a phrase.",
        "VizWiz": f"{QUESTION['VizWiz']}\nProvide a succinct response with a single word or phrase.",
        "Grounding": GROUND.format("man on the left"),
        "VQAv2": f"{QUESTION['VQAv2']}\n{SHORT}",
        "OCR-VQA": f"{QUESTION['OCR-VQA']}\nCondense your answer into a single word or concise phrase.",
    },
}


def _original(task: str) -> str:
    return SNAPSHOT["original"][task]


COIN = list(ORDERS["paper"])  # the families are CoIN's; the other benchmarks' prompts carry their own lines


def test_every_family_covers_every_task():
    for name in FAMILIES:
        fam = FAMILIES.get(name)
        assert set(fam.templates) == set(TASKS.names())
        for task, ts in ((t, ts) for t, ts in fam.templates.items() if t in COIN):
            assert len(ts) == (10 if fam.per_sample else 1)
            assert len({t.text for t in ts}) == len(ts)
            for t in ts:
                assert "\n" not in t.text and t.text.strip() == t.text
                assert t.text.count("{}") == (1 if task == "Grounding" else 0)


def test_known_strings_and_ours_marks():
    assert [t.text for t in templates("original", "ImageNet")] == [SHORT]
    assert not any(t.ours for f in ("original", "diverse") for task in COIN for t in templates(f, task))
    assert templates("10type", "ImageNet")[0].text == "Use one word or a short phrase to classify the content of the image."
    assert not any(t.ours for t in templates("10type", "ImageNet"))  # observed in the released files
    ours_10 = {n.task for n in ours("10type", COIN)}
    assert ours_10 == set(COIN) - {"ImageNet"}
    assert len(ours(tasks=COIN)) == 70 and ours("original") == [] and not any(n.fallback for n in ours(tasks=COIN))


def test_aliases_and_unknown_family():
    assert get_family("Type2").name == "diverse" and get_family("TYPE1").name == "original"
    with pytest.raises(KeyError, match="Did you mean '10type'"):
        get_family("10typ")


@pytest.mark.parametrize("family", ["original", "diverse"])
@pytest.mark.parametrize("task", sorted(QUESTION) + ["Grounding"])
def test_prompt_snapshot(task, family):
    assert rewrite(_original(task), task, family, "id-1") == SNAPSHOT[family][task]


def test_ten_type_is_a_seeded_draw_per_sample_id():
    ids = [f"q{i}" for i in range(400)]
    lines = [rewrite(_original("GQA"), "GQA", "10type", i, seed=0).splitlines()[-1] for i in ids]
    counts = Counter(lines)
    assert len(counts) == 10 and min(counts.values()) > 15  # every template is used, roughly evenly
    assert lines == [rewrite(_original("GQA"), "GQA", "10type", i, seed=0).splitlines()[-1] for i in ids]
    assert lines != [rewrite(_original("GQA"), "GQA", "10type", i, seed=1).splitlines()[-1] for i in ids]
    # pinned draws: a change in the hashing would silently change every 10Type prompt
    assert draw("10type", "ImageNet", "a", 0).text == "Use one word or a short phrase to classify the content of the image."
    assert draw("10type", "Grounding", "b", 0).text == "Return the bounding box, as [x1, y1, x2, y2], of: {}"


def test_grounding_keeps_its_description_through_every_family():
    text = GROUND.format("the woman in red, left")
    for family in ("10type", "diverse", "original"):
        for sid in ("a", "b", "c"):
            out = rewrite(text, "Grounding", family, sid)
            assert split_prompt(out, "Grounding")[1] == "the woman in red, left"
            assert rewrite(out, "Grounding", "original", sid) == text  # round trip


def test_apply_family_to_samples_and_records():
    samples = [Sample(id="s1", task="ImageNet", image="/x.png", prompt=_original("ImageNet"), answer="tench")]
    (s,) = apply_family(samples, "diverse")
    assert s.prompt == SNAPSHOT["diverse"]["ImageNet"] and s.answer == "tench" and samples[0].prompt == _original("ImageNet")
    test = [{"question_id": "q", "task": "GQA", "image": "a.png", "text": _original("GQA"), "answer": "yes"}]
    assert apply_family(test, "diverse")[0]["text"] == SNAPSHOT["diverse"]["GQA"]
    train = [{"id": "t", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\n" + _original("Grounding").replace("man on the left", "cat")},
        {"from": "gpt", "value": "[0.10, 0.20, 0.30, 0.40]"}]}]
    (r,) = apply_family(train, "10type", seed=0, task="Grounding")
    human = r["conversations"][0]["value"]
    assert human.startswith("<image>\n") and human.endswith("cat") and human != train[0]["conversations"][0]["value"]
    assert r["conversations"][1] == train[0]["conversations"][1]
    with pytest.raises(ValueError, match="pass task="):
        apply_family(train, "diverse")


def test_unknown_last_line_is_an_error_naming_the_record():
    rec = {"question_id": "q7", "task": "GQA", "image": "a.png", "text": "Is it red?\nPlease explain at length.",
           "answer": "no"}
    with pytest.raises(ValueError, match=r"record 0 \(question_id q7\): last line 'Please explain at length.'"):
        apply_family([rec], "diverse")
    with pytest.raises(ValueError, match="expected the question and then the format-instruction line"):
        apply_family([dict(rec, text=SHORT)], "diverse")
    with pytest.raises(ValueError, match="no Grounding instruction template matches"):
        rewrite("Where is the cat?", "Grounding", "diverse", "x")


def _multi_turn_record() -> dict:
    return {"id": "m1", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nIs the sky dark?\n" + SHORT}, {"from": "gpt", "value": "no"},
        {"from": "human", "value": "What color is the car?\n" + SHORT}, {"from": "gpt", "value": "red"},
        {"from": "human", "value": "Is it raining?\n" + SHORT}, {"from": "gpt", "value": "yes"}]}


@pytest.mark.parametrize("family", ["diverse", "10type"])
def test_every_human_turn_of_a_multi_turn_record_is_rewritten(family):
    """Released records group several questions per image; a family must reach every turn,
    or the Diverse and 10Type training sets mix families."""
    rec = _multi_turn_record()
    (r,) = apply_family([rec], family, seed=0, task="GQA")
    line = draw(family, "GQA", "m1", 0).text
    humans = [t["value"] for t in r["conversations"] if t["from"] == "human"]
    assert [h.splitlines()[-1] for h in humans] == [line] * 3 and line != SHORT
    assert humans[0].startswith("<image>\nIs the sky dark?\n") and humans[1].startswith("What color is the car?\n")
    assert [t["value"] for t in r["conversations"] if t["from"] == "gpt"] == ["no", "red", "yes"]
    assert rec == _multi_turn_record()  # the input is untouched


def test_every_turn_of_a_multi_turn_sample_is_rewritten():
    s = Sample(id="m1", task="GQA", image="/x.png", prompt="Is the sky dark?\n" + SHORT, answer="no",
               turns=(("What color is the car?\n" + SHORT, "red"), ("Is it raining?\n" + SHORT, "yes")))
    (out,) = apply_family([s], "diverse")
    want = "Respond to the question briefly, using only one word or a phrase."
    assert out.prompt.endswith("\n" + want)
    assert [q.splitlines()[-1] for q, _ in out.turns] == [want, want]
    assert [a for _, a in out.turns] == ["red", "yes"]


def test_a_later_turn_without_an_instruction_line_names_its_turn():
    rec = _multi_turn_record()
    rec["conversations"][4]["value"] = "Is it raining?\nExplain why."
    with pytest.raises(ValueError, match=r"record 0 \(id m1\) turn 2: last line 'Explain why.'"):
        apply_family([rec], "diverse", task="GQA")


# ------------------------------------------------------------------ a task that gives only its Original line


@pytest.fixture
def scratch_registries():
    """Tasks and families registered in a test are gone after it (the caches that key on them too)."""
    with TASKS.scratch(), FAMILIES.scratch():
        yield
    instructions._known_lines_of.cache_clear()
    instructions._slot_patterns.cache_clear()


SKETCH_LINE = "Name the drawing in one word."


def _sketch(**kw) -> TaskSpec:
    fields = {"name": "Sketch", "folder": "Sketch", "answer_form": "phrase", "scorer": "exact",
              "instruction": SKETCH_LINE, "max_new_tokens": 8}
    return TaskSpec(**{**fields, **kw})


def test_a_family_without_a_line_for_a_task_falls_back_to_its_original_line(scratch_registries):
    TASKS.register(_sketch())
    assert templates("original", "Sketch") == (Template(SKETCH_LINE),)
    for family in ("diverse", "10type"):
        assert templates(family, "Sketch") == (Template(SKETCH_LINE, fallback=True),)
        assert rewrite(f"What is drawn?\n{SKETCH_LINE}", "Sketch", family, "s1") == f"What is drawn?\n{SKETCH_LINE}"
    notes = ours(tasks=["Sketch"])
    assert [(n.family, n.fallback) for n in notes] == [("10type", True), ("diverse", True)]
    assert {n.task for n in ours("10type", COIN + ["Sketch"]) if n.fallback} == {"Sketch"}  # CoIN's have their own
    (note,) = prompt_notes("diverse", ["GQA", "Sketch"])
    assert note.startswith("Sketch: no diverse line of its own; falls back to its Original line") and SKETCH_LINE in note
    assert prompt_notes("original", ["GQA", "Sketch"]) == []
    assert prompt_notes("10type", ["GQA"]) == ["GQA: 10 of its 10type line(s) written by coin, not taken from the paper"]
    assert prompt_notes("diverse", ["Gone"]) == [
        "Gone: not registered here (a plugin's task?); its diverse lines are unknown"]


def test_a_task_gives_lines_for_some_families_and_plain_strings_are_accepted(scratch_registries):
    TASKS.register(_sketch(instructions={"diverse": ["Say what the drawing shows, in one word."]}))
    assert templates("diverse", "Sketch") == (Template("Say what the drawing shows, in one word."),)
    assert templates("10type", "Sketch")[0].fallback
    out = rewrite(f"What is drawn?\n{SKETCH_LINE}", "Sketch", "diverse", "s1")
    assert out == "What is drawn?\nSay what the drawing shows, in one word."
    assert rewrite(out, "Sketch", "original", "s1") == f"What is drawn?\n{SKETCH_LINE}"  # its lines are known


def test_a_task_naming_an_unknown_family_is_an_error_with_a_hint(scratch_registries):
    TASKS.register(_sketch(instructions={"divers": ["Say it in one word."]}))
    with pytest.raises(ValueError, match=r"task Sketch: instructions\.divers: .*Did you mean 'diverse'"):
        templates("diverse", "Sketch")


def test_a_plugin_task_with_an_embedded_slot_reads_its_own_lines_back(scratch_registries):
    """The slot patterns are the task's own, not Grounding's: a second task with a ``{}`` works too."""
    TASKS.register(_sketch(answer_form="box", scorer="grounding", instruction="Circle the object named here: {}",
                           instructions={"10type": ["Draw a box around: {}", "Where is {} in the picture?"]}))
    for sid in ("a", "b", "c", "d"):
        out = rewrite("Circle the object named here: the red kite", "Sketch", "10type", sid)
        assert out in ("Draw a box around: the red kite", "Where is the red kite in the picture?")
        assert split_prompt(out, "Sketch") == ("", "the red kite")


def test_a_plugin_family_brings_its_own_lines_and_falls_back_elsewhere(scratch_registries):
    terse = Family(name="terse", description="one short line per task", lines={"GQA": (Template("One word.", ours=True),)})
    FAMILIES.register(terse)
    assert rewrite(_original("GQA"), "GQA", "terse", "x") == f"{QUESTION['GQA']}\nOne word."
    assert templates("terse", "VizWiz") == (Template(SHORT, fallback=True),)
    assert rewrite(f"{QUESTION['GQA']}\nOne word.", "GQA", "original", "x") == _original("GQA")
