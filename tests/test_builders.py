"""Builders: each source's own files (fixtures in the real format) -> CoIN JSON, field by field."""

import json
import pickle
import random
from pathlib import Path

import pytest

from coin.cli import main
from coin.benchmarks.coin.builders import BUILDERS, build_source, options_of
from coin.benchmarks.coin.builders.refcoco import box_text, square_box
from coin.data.coin_json import DataError, load_test, load_train
from coin.scoring.scorers import score_sample
import raw_sources as rs

SHORT = "Answer the question using a single word or phrase."
LETTER = "Answer with the option's letter from the given choices directly."
GROUND = "Please provide the bounding box coordinate of the region this sentence describes: "


def _read(out: Path, folder: str) -> tuple[list, list]:
    d = out / "Instructions_Original" / folder
    return json.loads((d / "train.json").read_text()), json.loads((d / "test.json").read_text())


def _human(rec):
    return rec["conversations"][0]["value"]


def _gpt(rec):
    return rec["conversations"][1]["value"]


def test_registry_covers_the_ten_sources():
    assert BUILDERS.names() == sorted(["vqav2", "gqa", "textvqa", "vizwiz", "scienceqa", "ocrvqa", "imagenet",
                                       "refcoco", "refcoco+", "refcocog"])
    assert {BUILDERS.get(n).task for n in BUILDERS} == {"VQAv2", "GQA", "TextVQA", "VizWiz", "ScienceQA", "OCR-VQA",
                                                          "ImageNet", "Grounding"}


def test_vqav2(tmp_path):
    assert build_source("vqav2", rs.write_vqav2(tmp_path / "raw"), tmp_path / "out") == {"train": 2, "test": 1}
    train, test = _read(tmp_path / "out", "VQAv2")
    assert train[0] == {"id": "458752000", "image": "COCO2014/train2014/COCO_train2014_000000458752.jpg",
                        "source": "vqav2", "conversations": [
                            {"from": "human", "value": f"<image>\nWhat is this photo taken looking through?\n{SHORT}"},
                            {"from": "gpt", "value": "net"}]}
    assert _gpt(train[1]) == "white"
    assert test == [{"question_id": "42000", "image": "COCO2014/val2014/COCO_val2014_000000000042.jpg",
                     "text": f"How many dogs are there?\n{SHORT}", "answer": "2", "source": "vqav2",
                     "answers": ["2"] * 7 + ["two"] * 2 + ["3"]}]
    assert score_sample("vqa", "2", test[0]).score == 1.0


def test_gqa(tmp_path):
    build_source("gqa", rs.write_gqa(tmp_path / "raw"), tmp_path / "out")
    train, test = _read(tmp_path / "out", "GQA")
    assert [r["id"] for r in train] == ["02930152", "07333408"]
    assert train[0]["image"] == "GQA/images/2354786.jpg"
    assert _human(train[0]) == f"<image>\nIs the sky dark?\n{SHORT}" and _gpt(train[0]) == "yes"
    assert test == [{"question_id": "20968379", "image": "GQA/images/n288870.jpg",
                     "text": f"Who is wearing the dress?\n{SHORT}", "answer": "woman", "source": "gqa"}]


def test_textvqa_puts_ocr_tokens_in_the_prompt(tmp_path):
    build_source("textvqa", rs.write_textvqa(tmp_path / "raw"), tmp_path / "out")
    train, test = _read(tmp_path / "out", "TextVQA")
    assert train[0]["id"] == "0" and train[0]["image"] == "TextVQA/train_images/0054c91397f2fe05.jpg"
    assert _human(train[0]) == f"<image>\nwhat is the brand of phone?\nReference OCR token: NOKIA,MENU\n{SHORT}"
    assert _gpt(train[0]) == "nokia"  # the majority of the ten answers
    # tokens from the Rosetta OCR file when the record has none of its own
    assert _human(train[1]) == f"<image>\nwhat does the sign say?\nReference OCR token: STOP,ALL,WAY\n{SHORT}"
    assert _gpt(train[1]) == "stop"
    (t,) = test
    assert t["question_id"] == "34602" and t["text"] == f"what year is on the coin?\n{SHORT}"  # no tokens: no line
    assert t["answer"] == "1735" and len(t["answers"]) == 10


def test_vizwiz_answerable_flag(tmp_path):
    build_source("vizwiz", rs.write_vizwiz(tmp_path / "raw"), tmp_path / "out")
    train, test = _read(tmp_path / "out", "VizWiz")
    assert train[0]["id"] == "VizWiz_train_00000000"
    assert train[0]["image"] == "VizWiz/train/VizWiz_train_00000000.jpg"
    assert _human(train[0]) == f"<image>\nWhat's the name of this product?\n{SHORT}"
    assert _gpt(train[0]) == "basil leaves"
    assert _gpt(train[1]) == "unanswerable"  # answerable == 0, whatever the majority said
    assert test[0]["question_id"] == "VizWiz_val_00000000" and test[0]["answer"] == "no"
    assert test[0]["image"] == "VizWiz/val/VizWiz_val_00000000.jpg"


def test_scienceqa_letters_and_every_question(tmp_path):
    build_source("scienceqa", rs.write_scienceqa(tmp_path / "raw"), tmp_path / "out")
    train, test = _read(tmp_path / "out", "ScienceQA")
    assert [r["id"] for r in train] == ["1", "5"]  # the full split: pid 1 has no image
    assert "image" not in train[0] and _human(train[0]) == f"Which word is a noun?\nA. run\nB. cat\n{LETTER}"
    assert train[1]["image"] == "ScienceQA/train/5/image.png"
    assert _human(train[1]) == ("<image>\nWhich of these states is farthest north?\nA. West Virginia\nB. Louisiana\n"
                                f"C. Arizona\nD. Oklahoma\n{LETTER}")
    assert _gpt(train[1]) == "A"
    (t,) = test
    assert t["text"] == ("Context: The map shows the colonies.\nWhat is the name of the colony shown?\nA. Maryland\n"
                         f"B. New Hampshire\nC. Rhode Island\nD. Vermont\n{LETTER}")
    assert t["answer"] == "B" and t["image"] == "ScienceQA/test/9/image.png"
    assert score_sample("letter", "B", t).score == 1.0
    assert score_sample("letter", "New Hampshire", t).tag == "wrong_format"  # the scorer reads our option lines


def test_ocrvqa_splits_and_ids(tmp_path):
    raw = rs.write_ocrvqa(tmp_path / "raw")
    build_source("ocrvqa", raw, tmp_path / "out")
    train, test = _read(tmp_path / "out", "OCRVQA")
    assert [r["id"] for r in train] == ["465016540_0", "465016540_1"]
    assert train[0]["image"] == "OCR-VQA/images/465016540.jpg"
    assert _human(train[0]) == f"<image>\nWho wrote this book?\n{SHORT}" and _gpt(train[0]) == "Bill Watterson"
    assert [(r["question_id"], r["answer"]) for r in test] == [("0061783404_0", "The Road")]
    build_source("ocrvqa", raw, tmp_path / "out2", test_splits="val,test")
    _, test = _read(tmp_path / "out2", "OCRVQA")
    assert [r["image"] for r in test] == ["OCR-VQA/images/1883011213.gif", "OCR-VQA/images/0061783404.jpg"]


@pytest.mark.parametrize("val_sorted", [False, True])
def test_imagenet_all_classes_readable_names(tmp_path, val_sorted):
    build_source("imagenet", rs.write_imagenet(tmp_path / "raw", val_sorted=val_sorted), tmp_path / "out", classes=5)
    train, test = _read(tmp_path / "out", "ImageNet")
    assert len(train) == 10 and len(test) == 5
    assert train[0] == {"id": "n01440764_0", "image": "ImageNet/train/n01440764/n01440764_0.JPEG", "source": "imagenet",
                        "conversations": [{"from": "human", "value": f"<image>\nWhat is the object in the image?\n{SHORT}"},
                                          {"from": "gpt", "value": "tench"}]}
    names = {r["image"].split("/")[2]: _gpt(r) for r in train}
    assert names == {"n01440764": "tench", "n02012849": "crane", "n02085620": "Chihuahua",
                     "n03126707": "crane (n03126707)", "n04037443": "racer"}  # the second crane is told apart
    sub = "n01440764/" if val_sorted else ""
    assert test[0]["question_id"] == "ILSVRC2012_val_00000000" and test[0]["answer"] == "tench"
    assert test[0]["image"] == f"ImageNet/val/{sub}ILSVRC2012_val_00000000.JPEG"


def test_imagenet_subset_is_seeded(tmp_path):
    raw = rs.write_imagenet(tmp_path / "raw")
    chosen = {}
    for seed in (0, 1):
        build_source("imagenet", raw, tmp_path / f"out{seed}", seed=seed, classes=3)
        train, test = _read(tmp_path / f"out{seed}", "ImageNet")
        chosen[seed] = sorted({r["image"].split("/")[2] for r in train})
        assert chosen[seed] == sorted(random.Random(seed).sample(sorted(rs.IMAGENET_CLASSES), 3))
        assert len(test) == 3
    assert chosen[0] != chosen[1]
    with pytest.raises(DataError, match="asked for 9 classes"):
        build_source("imagenet", raw, tmp_path / "o", classes=9)


def test_square_box_normalisation():
    assert square_box([100, 50, 200, 100], 640, 480) == [100 / 640, 130 / 640, 300 / 640, 230 / 640]  # padded top 80
    assert square_box([0, 0, 300, 600], 300, 600) == [0.25, 0.0, 0.75, 1.0]  # padded left 150
    assert box_text([0.15625, 0.203125, 0.46875, 0.359375]) == "[0.16, 0.20, 0.47, 0.36]"


def test_refcoco_one_expression_per_image_and_boxes(tmp_path):
    build_source("refcoco", rs.write_refcoco(tmp_path / "raw"), tmp_path / "out")
    train, test = _read(tmp_path / "out", "Grounding")
    assert len(train) == 2  # image 1 has two refs: one record
    first, second = train
    assert first["id"] in ("refcoco_10", "refcoco_11")
    assert first["image"] == "COCO2014/train2014/COCO_train2014_000000000001.jpg"
    sentence = _human(first).removeprefix("<image>\n" + GROUND)
    assert sentence in ("man on the left", "woman in red", "lady")
    assert _gpt(first) == "[0.16, 0.20, 0.47, 0.36]"
    assert second == {"id": "refcoco_12", "image": "COCO2014/train2014/COCO_train2014_000000000002.jpg",
                      "source": "refcoco", "conversations": [
                          {"from": "human", "value": f"<image>\n{GROUND}tall giraffe"},
                          {"from": "gpt", "value": "[0.25, 0.00, 0.75, 1.00]"}]}
    assert test == [{"question_id": "refcoco_13", "image": "COCO2014/train2014/COCO_train2014_000000000003.jpg",
                     "text": f"{GROUND}blue car", "answer": "[0.10, 0.20, 0.40, 0.60]", "source": "refcoco",
                     "answer_bbox": "[0.10, 0.20, 0.40, 0.60]", "size": [100, 100]}]
    assert score_sample("grounding", "[0.10, 0.20, 0.40, 0.60]", test[0]).score == 1.0
    again = tmp_path / "again"
    build_source("refcoco", tmp_path / "raw", again)
    assert _read(again, "Grounding") == (train, test)  # the draw is seeded


def test_three_refcoco_sources_accumulate_into_grounding(tmp_path):
    out = tmp_path / "out"
    build_source("refcoco", rs.write_refcoco(tmp_path / "a"), out)
    build_source("refcoco+", rs.write_refcoco(tmp_path / "b"), out)
    build_source("refcocog", rs.write_refcoco(tmp_path / "c", "refs(umd).p", test_split="test"), out)
    build_source("refcoco", tmp_path / "a", out)  # rebuilding a source replaces only its records
    train, test = _read(out, "Grounding")
    assert [r["source"] for r in train] == ["refcoco"] * 2 + ["refcoco+"] * 2 + ["refcocog"] * 2
    assert [r["question_id"] for r in test] == ["refcoco_13", "refcoco+_13", "refcocog_13"]
    samples = load_test(out / "Instructions_Original" / "Grounding" / "test.json", tmp_path, "Grounding")
    assert len(samples) == 3


def test_refs_pickle_with_code_is_refused(tmp_path):
    raw = rs.write_refcoco(tmp_path / "raw")
    (raw / "refs(unc).p").write_bytes(pickle.dumps([Path("x")]))
    with pytest.raises(DataError, match="refusing to load"):
        build_source("refcoco", raw, tmp_path / "out")


def test_builder_errors_name_the_file(tmp_path):
    raw = rs.write_gqa(tmp_path / "raw")
    data = json.loads((raw / "train_balanced_questions.json").read_text())
    del data["07333408"]["answer"]
    (raw / "train_balanced_questions.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"train_balanced_questions.json question 07333408: missing key 'answer'"):
        build_source("gqa", raw, tmp_path / "out")
    with pytest.raises(DataError, match="none of problems.json found"):
        build_source("scienceqa", tmp_path / "raw", tmp_path / "out")
    with pytest.raises(DataError, match="unknown option.s. clases; options: train_file, test_file"):
        build_source("gqa", raw, tmp_path / "out", clases=3)
    assert options_of("imagenet") == {"classes": 100}


def test_built_files_load_with_the_released_loaders(tmp_path):
    out = tmp_path / "out"
    for source, writer in (("vqav2", rs.write_vqav2), ("gqa", rs.write_gqa), ("textvqa", rs.write_textvqa),
                           ("vizwiz", rs.write_vizwiz), ("scienceqa", rs.write_scienceqa), ("ocrvqa", rs.write_ocrvqa),
                           ("imagenet", rs.write_imagenet), ("refcoco", rs.write_refcoco)):
        options = {"classes": 5} if source == "imagenet" else {}
        build_source(source, writer(tmp_path / source), out, **options)
    for task in ("VQAv2", "GQA", "TextVQA", "VizWiz", "ScienceQA", "OCR-VQA", "ImageNet", "Grounding"):
        from coin.tasks import get_task

        spec = get_task(task)
        d = out / "Instructions_Original" / spec.folder
        samples = load_train(d / "train.json", tmp_path / "img", task)
        records = load_test(d / "test.json", tmp_path / "img", task)
        assert samples and records
        assert all(s.prompt.splitlines()[-1] == spec.instruction.format(s.prompt.split(": ", 1)[-1])
                   if "{}" in spec.instruction else s.prompt.splitlines()[-1] == spec.instruction for s in samples)


def test_cli_build(tmp_path, capsys):
    raw = rs.write_vizwiz(tmp_path / "raw")
    assert main(["data", "build", "vizwiz", "--raw", str(raw), "--out", str(tmp_path / "out"),
                 "--image-prefix", "vw"]) == 0
    assert "2 train and 1 test records" in capsys.readouterr().out
    train, _ = _read(tmp_path / "out", "VizWiz")
    assert train[0]["image"] == "vw/train/VizWiz_train_00000000.jpg"
    assert main(["data", "build", "vizwz", "--raw", str(raw), "--out", str(tmp_path / "out")]) == 2
    assert "Did you mean 'vizwiz'?" in capsys.readouterr().err
    assert main(["data", "build", "imagenet", "--raw", str(rs.write_imagenet(tmp_path / "in")), "--out",
                 str(tmp_path / "out"), "--option", "classes=2"]) == 0
    train, _ = _read(tmp_path / "out", "ImageNet")
    assert len(train) == 4


PLUGIN_BUILDER = '''
"""A plugin task with its own source: one file declares the task and registers its builder."""
import json
from pathlib import Path

from coin.benchmarks.coin.builders.builder import BUILDERS, Builder, Built, prompt, test_record, train_record
from coin.tasks import TASKS, TaskSpec

TASKS.register(TaskSpec(name="Sketch", folder="SketchFolder", answer_form="phrase", scorer="exact",
                        instruction="Name the drawing in one word.", max_new_tokens=8))


def build(raw: Path, prefix: str = "sketches", seed: int = 0, limit: int = 10) -> Built:
    rows = json.loads((raw / "labels.json").read_text())[:limit]
    return Built(train=[train_record(f"t{k}", f"{prefix}/{r['file']}", prompt("Sketch", "What is drawn?"),
                                     r["label"], "sketchsrc") for k, r in enumerate(rows)],
                 test=[test_record("q0", f"{prefix}/{rows[0]['file']}", prompt("Sketch", "What is drawn?"),
                                   rows[0]["label"], "sketchsrc")])


BUILDERS.register(Builder(name="sketchsrc", task="Sketch", build=build, inputs="labels.json", image_prefix="sketches"))
'''


@pytest.fixture
def scratch_builders():
    """Tasks and builders registered in a test are gone after it."""
    from coin.tasks import TASKS

    with TASKS.scratch(), BUILDERS.scratch():
        yield


def test_a_plugin_source_is_one_file(tmp_path, scratch_builders):
    """The builder registry is filled by each module's own last line, so a plugin's builder needs no other edit."""
    import importlib.util

    (tmp_path / "sketch_plugin.py").write_text(PLUGIN_BUILDER)
    spec = importlib.util.spec_from_file_location("sketch_plugin_for_test", tmp_path / "sketch_plugin.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "labels.json").write_text(json.dumps([{"file": "a.png", "label": "cat"},
                                                               {"file": "b.png", "label": "tree"}]))
    assert options_of("sketchsrc") == {"limit": 10}
    assert build_source("sketchsrc", tmp_path / "raw", tmp_path / "out", limit=1) == {"train": 1, "test": 1}
    train, test = _read(tmp_path / "out", "SketchFolder")
    assert _human(train[0]) == "<image>\nWhat is drawn?\nName the drawing in one word." and _gpt(train[0]) == "cat"
    assert test[0]["image"] == "sketches/a.png"


def test_a_builder_for_an_unknown_task_is_refused_at_registration():
    from coin.benchmarks.coin.builders import Builder

    with pytest.raises(ValueError, match=r"data source 'x':\n  - unknown task 'GQAA'. Did you mean 'GQA'"):
        BUILDERS.register(Builder(name="x", task="GQAA", build=lambda raw, prefix, seed: None, inputs="", image_prefix=""))
    assert "x" not in BUILDERS
