"""Instruction families: the exact strings, which ones are ours, and how a family rewrites prompts."""

from collections import Counter

import pytest

from coin.models.vlm import Sample
from coin.tasks import TASKS
from coin.tasks.instructions import FAMILIES, apply_family, draw, get_family, ours, rewrite, split_prompt, templates

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


def test_every_family_covers_every_task():
    for name in FAMILIES:
        fam = FAMILIES.get(name)
        assert set(fam.templates) == set(TASKS.names())
        for task, ts in fam.templates.items():
            assert len(ts) == (10 if fam.per_sample else 1)
            assert len({t.text for t in ts}) == len(ts)
            for t in ts:
                assert "\n" not in t.text and t.text.strip() == t.text
                assert t.text.count("{}") == (1 if task == "Grounding" else 0)


def test_known_strings_and_ours_marks():
    assert [t.text for t in templates("original", "ImageNet")] == [SHORT]
    assert not any(t.ours for f in ("original", "diverse") for task in TASKS for t in templates(f, task))
    assert templates("10type", "ImageNet")[0].text == "Use one word or a short phrase to classify the content of the image."
    assert not any(t.ours for t in templates("10type", "ImageNet"))  # observed in the released files
    ours_10 = {task for _, task, _ in ours("10type")}
    assert ours_10 == set(TASKS.names()) - {"ImageNet"}
    assert len(ours()) == 70 and ours("original") == []


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
