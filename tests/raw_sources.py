"""Tiny fixtures in each source dataset's real file format (written by the tests, never downloaded).

Each ``write_<source>(raw)`` writes that source's annotation files into ``raw`` with a few
records whose expected CoIN output the tests spell out field by field. ``write_images``
puts real, tiny images where the built records point, for the end-to-end run.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from PIL import Image


def _json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _vqa_answers(*pairs: tuple[str, int]) -> list[dict]:
    out = []
    for answer, n in pairs:
        out += [{"answer": answer, "answer_confidence": "yes", "answer_id": len(out) + 1 + i} for i in range(n)]
    return out


def write_vqav2(raw: Path) -> Path:
    for sub, qs in (("train2014", [(458752, 458752000, "What is this photo taken looking through?", "net",
                                    [("net", 9), ("netting", 1)]),
                                   (262146, 262146001, "What color is the snow?", "white", [("white", 10)])]),
                    ("val2014", [(42, 42000, "How many dogs are there?", "2", [("2", 7), ("two", 2), ("3", 1)])])):
        _json(raw / f"v2_OpenEnded_mscoco_{sub}_questions.json", {
            "info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {}, "data_subtype": sub,
            "questions": [{"image_id": i, "question": q, "question_id": qid} for i, qid, q, _, _ in qs]})
        _json(raw / f"v2_mscoco_{sub}_annotations.json", {
            "info": {}, "license": {}, "data_subtype": sub, "annotations": [
                {"question_type": "what", "multiple_choice_answer": mc, "answers": _vqa_answers(*ans),
                 "image_id": i, "answer_type": "other", "question_id": qid} for i, qid, _, mc, ans in qs]})
    return raw


def write_gqa(raw: Path) -> Path:
    def q(image, question, answer, full):
        return {"semantic": [{"operation": "select", "dependencies": [], "argument": "sky (2486325)"}],
                "entailed": [], "equivalent": [], "question": question, "imageId": image, "isBalanced": True,
                "groups": {"global": None, "local": "x"}, "answer": answer, "semanticStr": "select: sky",
                "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
                "types": {"structural": "verify", "semantic": "attr", "detailed": "verifyAttr"}, "fullAnswer": full}

    _json(raw / "train_balanced_questions.json", {
        "02930152": q("2354786", "Is the sky dark?", "yes", "Yes, the sky is dark."),
        "07333408": q("2375429", "What is on the white wall?", "pipe", "The pipe is on the wall.")})
    _json(raw / "testdev_balanced_questions.json", {
        "20968379": q("n288870", "Who is wearing the dress?", "woman", "The woman is wearing a dress.")})
    return raw


def write_textvqa(raw: Path) -> Path:
    def rec(qid, image, question, answers, split, **extra):
        return {"question": question, "image_id": image, "image_classes": ["Belt"], "flickr_original_url": "",
                "flickr_300k_url": "", "image_width": 1024, "image_height": 730, "answers": answers,
                "question_tokens": question.split(), "question_id": qid, "set_name": split, **extra}

    _json(raw / "TextVQA_0.5.1_train.json", {"dataset_type": "train", "dataset_name": "textvqa",
                                              "dataset_version": "0.5.1", "data": [
        rec(0, "0054c91397f2fe05", "what is the brand of phone?", ["nokia"] * 8 + ["Nokia", "toshiba"], "train",
            ocr_tokens=["NOKIA", "MENU"]),
        rec(1, "005635e119b9f32f", "what does the sign say?", ["stop"] * 6 + ["STOP"] * 4, "train")]})
    _json(raw / "TextVQA_Rosetta_OCR_v0.2_train.json", {"data": [{"image_id": "005635e119b9f32f",
                                                                    "ocr_tokens": ["STOP", "ALL", "WAY"]}]})
    _json(raw / "TextVQA_0.5.1_val.json", {"dataset_type": "val", "dataset_name": "textvqa",
                                            "dataset_version": "0.5.1", "data": [
        rec(34602, "003a8ae2ef43b901", "what year is on the coin?", ["1735"] * 9 + ["1736"], "val", ocr_tokens=[])]})
    return raw


def write_vizwiz(raw: Path) -> Path:
    def ans(*pairs):
        return [{"answer": a, "answer_confidence": "yes"} for a, n in pairs for _ in range(n)]

    _json(raw / "Annotations" / "train.json", [
        {"image": "VizWiz_train_00000000.jpg", "question": "What's the name of this product?",
         "answers": ans(("basil leaves", 6), ("basil", 4)), "answer_type": "other", "answerable": 1},
        {"image": "VizWiz_train_00000001.jpg", "question": "What is this?",
         "answers": ans(("unanswerable", 4), ("blurry", 6)), "answer_type": "unanswerable", "answerable": 0}])
    _json(raw / "Annotations" / "val.json", [
        {"image": "VizWiz_val_00000000.jpg", "question": "Is it cloudy?",
         "answers": ans(("yes", 3), ("no", 7)), "answer_type": "yes/no", "answerable": 1}])
    return raw


def write_scienceqa(raw: Path) -> Path:
    base = {"task": "closed choice", "grade": "grade2", "subject": "social science", "topic": "geography",
            "category": "Geography", "skill": "Read a map", "lecture": "", "solution": ""}
    _json(raw / "problems.json", {
        "1": {**base, "question": "Which word is a noun?", "choices": ["run", "cat"], "answer": 1, "hint": "",
              "image": None, "split": "train"},
        "5": {**base, "question": "Which of these states is farthest north?",
              "choices": ["West Virginia", "Louisiana", "Arizona", "Oklahoma"], "answer": 0, "hint": "",
              "image": "image.png", "split": "train"},
        "9": {**base, "question": "What is the name of the colony shown?",
              "choices": ["Maryland", "New Hampshire", "Rhode Island", "Vermont"], "answer": 1,
              "hint": "The map shows the colonies.", "image": "image.png", "split": "test"}})
    _json(raw / "pid_splits.json", {"train": ["1", "5"], "val": [], "test": ["9"], "trainval": ["1", "5"],
                                    "minitrain": [], "minival": [], "minitest": []})
    return raw


def write_ocrvqa(raw: Path) -> Path:
    _json(raw / "dataset.json", {
        "465016540": {"imageURL": "http://ecx.images-amazon.com/images/I/51Da1Y2ZHRL.jpg",
                      "questions": ["Who wrote this book?", "Is this a comedy book?"],
                      "answers": ["Bill Watterson", "No"], "title": "Calvin and Hobbes",
                      "authorName": "Bill Watterson", "genre": 6, "split": 1},
        "1883011213": {"imageURL": "http://ecx.images-amazon.com/images/I/61Y5cOdHJbL.gif",
                       "questions": ["What is the genre of this book?"], "answers": ["Travel"],
                       "title": "t", "authorName": "a", "genre": 28, "split": 2},
        "0061783404": {"imageURL": "http://x/y.jpg", "questions": ["What is the title of this book?"],
                       "answers": ["The Road"], "title": "The Road", "authorName": "b", "genre": 1, "split": 3}})
    return raw


IMAGENET_CLASSES = {  # wnid -> synset line (two "crane"s, as in ImageNet)
    "n01440764": "tench, Tinca tinca",
    "n02012849": "crane",
    "n02085620": "Chihuahua",
    "n03126707": "crane",
    "n04037443": "racer, race car, racing car",
}


def write_imagenet(raw: Path, per_class: int = 2, val_sorted: bool = False) -> Path:
    (raw / "LOC_synset_mapping.txt").parent.mkdir(parents=True, exist_ok=True)
    (raw / "LOC_synset_mapping.txt").write_text("".join(f"{w} {n}\n" for w, n in IMAGENET_CLASSES.items()))
    rows = ["ImageId,PredictionString"]
    for k, w in enumerate(IMAGENET_CLASSES):
        for i in range(per_class):
            f = raw / "train" / w / f"{w}_{i}.JPEG"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"")
        name = f"ILSVRC2012_val_{k:08d}"
        val = raw / "val" / (w if val_sorted else "") / f"{name}.JPEG"
        val.parent.mkdir(parents=True, exist_ok=True)
        val.write_bytes(b"")
        rows.append(f"{name},{w} 10 20 30 40")
    (raw / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return raw


def _ref(ref_id, ann_id, image_id, split, *sents):
    return {"sent_ids": list(range(len(sents))), "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
            "ann_id": ann_id, "ref_id": ref_id, "image_id": image_id, "split": split, "category_id": 1,
            "sentences": [{"tokens": s.split(), "raw": s.upper(), "sent_id": k, "sent": s} for k, s in enumerate(sents)]}


def write_refcoco(raw: Path, refs_name: str = "refs(unc).p", test_split: str = "testA") -> Path:
    """Image 1 (640x480) has two refs (one record is kept); image 2 (300x600) one; image 3 is test."""
    raw.mkdir(parents=True, exist_ok=True)
    refs = [_ref(10, 100, 1, "train", "man on the left"), _ref(11, 101, 1, "train", "woman in red", "lady"),
            _ref(12, 102, 2, "train", "tall giraffe"), _ref(13, 103, 3, test_split, "blue car")]
    (raw / refs_name).write_bytes(pickle.dumps(refs, protocol=2))
    _json(raw / "instances.json", {
        "info": {}, "licenses": [], "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
        "images": [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "width": 640, "height": 480},
                   {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "width": 300, "height": 600},
                   {"id": 3, "file_name": "COCO_train2014_000000000003.jpg", "width": 100, "height": 100}],
        "annotations": [{"id": 100, "image_id": 1, "bbox": [100, 50, 200, 100], "category_id": 1},
                        {"id": 101, "image_id": 1, "bbox": [100, 50, 200, 100], "category_id": 1},
                        {"id": 102, "image_id": 2, "bbox": [0, 0, 300, 600], "category_id": 1},
                        {"id": 103, "image_id": 3, "bbox": [10, 20, 30, 40], "category_id": 1}]})
    return raw


def write_images(image_root: Path, records: list[dict], size: tuple[int, int] = (48, 40)) -> None:
    """A small real JPEG at every distinct image path the records use."""
    for k, rel in enumerate(sorted({r["image"] for r in records})):
        p = image_root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, ((40 * k) % 256, 90, 160)).save(p, format="PNG" if p.suffix == ".png" else "JPEG")
