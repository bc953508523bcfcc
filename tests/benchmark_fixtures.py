"""Small trees in UCIT's and MLLM-CL's released layouts, written by the tests (no download).

Each task gets a few training records (LLaVA conversations) and test records
(``question_id``, ``image``, ``text``, ``answer``) over small PNGs in the folders the
benchmarks use, with the spellings the scripts use (``CLEVR``, ``Flickr30k-cap``,
``VizWiz-caption``, ``math_test``, ``CV-Benchv2``), so the loaders are exercised on the
layouts as released, quirks included.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

COLOURS = ["red", "green", "blue", "yellow"]
RGB = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}


def _png(path: Path, colour: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), RGB[colour]).save(path)


def _dump(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return path


def _conv(rid: str, image: str, question: str, answer: str) -> dict:
    return {"id": rid, "image": image, "conversations": [{"from": "human", "value": f"<image>\n{question}"},
                                                         {"from": "gpt", "value": answer}]}


# ---------------------------------------------------------------------------------------------- UCIT

UCIT_SHORT = "Answer the question using a single word or phrase."
UCIT_LETTER = "Answer with the option's letter from the given choices directly."
UCIT_TASKS = {  # task -> (folder as the scripts spell it, question, answer of colour c)
    "ImageNet-R": ("ImageNet-R", f"What is the object in the image?\n{UCIT_SHORT}", lambda c: c),
    "ArxivQA": ("ArxivQA", "Which colour fills the figure?\nA. red\nB. green\nC. blue\nD. yellow\n" + UCIT_LETTER,
                lambda c: "ABCD"[COLOURS.index(c)]),
    "VizWiz-Caption": ("VizWiz-caption", "Describe the image briefly.", lambda c: f"a plain {c} square"),
    "IconQA": ("IconQA", f"What colour is the icon?\n{UCIT_SHORT}", lambda c: c),
    "CLEVR-Math": ("CLEVR", f"Subtract all objects. How many are left?\n{UCIT_SHORT}", lambda c: "0"),
    "Flickr30k": ("Flickr30k-cap", "Describe the image briefly.", lambda c: f"a {c} picture"),
}


def write_ucit(root: Path, n_train: int = 8, n_test: int = 4, references: bool = True) -> Path:
    """A UCIT tree: ``instructions/<Folder>/{train,test_3000}.json``, images under ``datasets/``;
    the caption tasks get ``val_coco_type_3000.json`` with two captions per image id 1..n_test."""
    for task, (folder, question, answer) in UCIT_TASKS.items():
        slug = folder.lower()
        train, test = [], []
        for k in range(n_train):
            c = COLOURS[k % 4]
            _png(root / "datasets" / folder / f"train_{k}.png", c)
            train.append(_conv(f"{slug}-t{k}", f"{folder}/train_{k}.png", question, answer(c)))
        for k in range(n_test):
            c = COLOURS[(k + 1) % 4]
            _png(root / "datasets" / folder / f"test_{k}.png", c)
            test.append({"question_id": f"{slug}-q{k}", "image": f"{folder}/test_{k}.png", "text": question,
                         "answer": answer(c)})
        _dump(root / "instructions" / folder / "train.json", train)
        _dump(root / "instructions" / folder / "test_3000.json", test)
        if references and answer("red").startswith("a "):
            anns = [{"image_id": k + 1, "id": 2 * k + j, "caption": cap}
                    for k in range(n_test) for j, cap in enumerate((answer(COLOURS[(k + 1) % 4]),
                                                                    f"a square that is {COLOURS[(k + 1) % 4]}"))]
            _dump(root / "instructions" / folder / "val_coco_type_3000.json",
                  {"images": [{"id": k + 1} for k in range(n_test)], "annotations": anns})
    return root


# ------------------------------------------------------------------------------------------- MLLM-CL

DOMAIN = {  # task -> (question, answer of colour c, image paths relative to the domain folder's images/?)
    "RS": ("Which colour is the field?\nAnswer the question using a single word or phrase.", lambda c: c, True),
    "Med": ("What colour is the scan?\nAnswer the question using a single word or phrase.", lambda c: c, False),
    "AD": ("What colour is the light?\nAnswer the question using a single word or phrase.", lambda c: c, True),
    "Sci": ("What colour is the diagram?\nAnswer the question using a single word or phrase.", lambda c: c, True),
    "Fin": ("What colour is the chart?\nAnswer with a single word.", lambda c: c, True),
}


def write_mllm_dcl(root: Path, n_train: int = 6, n_test: int = 4) -> Path:
    """``Domain_data/<D>/{images/, train.json, test.json}``; RS, AD, Sci and Fin give paths as ``images/x.png``,
    Med as ``x.png`` (relative to ``images/``): both conventions are read."""
    for task, (question, answer, with_prefix) in DOMAIN.items():
        folder = root / "Domain_data" / task
        rows = {"train": [], "test": []}
        for split, n in (("train", n_train), ("test", n_test)):
            for k in range(n):
                c = COLOURS[(k + (split == "test")) % 4]
                _png(folder / "images" / f"{split}_{k}.png", c)
                image = f"images/{split}_{k}.png" if with_prefix else f"{split}_{k}.png"
                if split == "train":
                    rows[split].append(_conv(f"{task}-t{k}", image, question, answer(c)))
                else:
                    rows[split].append({"question_id": k, "image": image, "text": question, "answer": answer(c)})
        _dump(folder / "train.json", rows["train"])
        _dump(folder / "test.json", rows["test"])
    return root


ABILITY = {  # task -> (train folder, test folder, question, answer of colour c)
    "OCR": ("OCR", "OCR_test", "What word is written?\nAnswer the question using a single word or phrase.",
            lambda c: c),
    "Math": ("Math", "math_test", "How many sides does the square have?\nAnswer with a number.", lambda c: "4"),
    "VP": ("VP", "CV-Benchv2", "Which colour is it?\n(A) red\n(B) green\n(C) blue\n(D) yellow\n"
           "Answer with the option's letter from the given choices directly.",
           lambda c: f"({'ABCD'[COLOURS.index(c)]})"),
    "APP": ("APP", "APP_test", "Which button opens the menu?\nA. red\nB. green\nC. blue\nD. yellow\n"
            "Answer with the option's letter from the given choices directly.", lambda c: "ABCD"[COLOURS.index(c)]),
}


def write_mllm_acl(root: Path, n_train: int = 6, n_test: int = 4) -> Path:
    """``<X>/{images, train.json}`` and ``<X>_test/{images, test.json}`` (``math_test``, ``CV-Benchv2``);
    OCR test answers are lists with ``answer_type``; APP's test records have no ``answer``."""
    for task, (train_dir, test_dir, question, answer) in ABILITY.items():
        train, test = [], []
        for k in range(n_train):
            c = COLOURS[k % 4]
            _png(root / train_dir / "images" / f"{k}.png", c)
            train.append(_conv(f"{task}-t{k}", f"images/{k}.png", question, answer(c)))
        for k in range(n_test):
            c = COLOURS[(k + 1) % 4]
            _png(root / test_dir / "images" / f"{k}.png", c)
            rec = {"question_id": f"{task.lower()}{k}", "image": f"images/{k}.png", "text": question}
            if task == "OCR":
                rec.update(answer=[answer(c), answer(c).upper()], answer_type="Regular Text Recognition")
            elif task != "APP":
                rec["answer"] = answer(c)
            test.append(rec)
        _dump(root / train_dir / "train.json", train)
        _dump(root / test_dir / "test.json", test)
    return root
