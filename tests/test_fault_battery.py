"""The bad-input battery: every config and data fault a hostile user tried, run through ``coin run``.

Each case writes a small, valid CoIN tree in the release's layout (``Instructions_Original/
<Task>/{train,test}.json`` and real PNGs) and a valid micro config, breaks one thing, and runs
the real CLI (``coin.cli.main``) on it. The outcome is classified:

- ``refused before load``: a clean error (exit 2) before any model was loaded;
- ``refused later``: a clean error after the model loaded (an image's content, read by the
  header pass that overlaps model loading, before the first training step);
- ``crashed``: an exception the CLI does not map to an exit code (a traceback);
- ``accepted``: exit 0 on input that is invalid (silently accepted).

The test asserts zero crashed and zero accepted, and that every refusal's first line names the
file, key or record it is about. ``python tests/test_fault_battery.py`` prints the table.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml
from conftest import MICRO
from PIL import Image

pytestmark = pytest.mark.slow

TINY = {**copy.deepcopy(MICRO), "train": {"batch_size": 4, "lr": 1e-3}, "eval": {"batch_size": 4, "bootstrap": 20}}
TINY.pop("data")  # the battery's own CoIN tree replaces CoIN-Synth


# ----------------------------------------------------------------------------- the valid tree


def _train(task: str, k: int) -> dict:
    answer = ["cat", "dog", "fish", "bird"][k % 4] if task == "ImageNet" else f"[0.{k + 1}, 0.2, 0.5, 0.6]"
    question = "What is the object in the image?" if task == "ImageNet" else "Please provide the bounding box of: the thing"
    return {"id": f"{task}-{k}", "image": f"{task.lower()}/{k}.png",
            "conversations": [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]}


def _test(task: str, k: int) -> dict:
    rec = {"question_id": f"{task}-t{k}", "image": f"{task.lower()}/t{k}.png",
           "text": "What is the object in the image?" if task == "ImageNet" else "Please provide the bounding box of: the thing"}
    if task == "ImageNet":
        rec["answer"] = ["cat", "dog"][k % 2]
    else:
        rec["answer"] = rec["answer_bbox"] = f"[0.{k + 1}, 0.2, 0.5, 0.6]"
    return rec


def write_tree(base: Path) -> tuple[Path, Path]:
    """A valid two-task CoIN tree under ``base`` (data root, image root)."""
    root, images = base / "CoIN", base / "images"
    for task in TINY["tasks"]["order"]:
        for split, make, n in (("train", _train, 8), ("test", _test, 2)):
            rows = [make(task, k) for k in range(n)]
            path = root / "Instructions_Original" / task / f"{split}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rows))
            for r in rows:
                img = images / r["image"]
                img.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (24, 20), (30 * len(r["image"]) % 256, 90, 160)).save(img)
    return root, images


# ----------------------------------------------------------------------------- the cases


@dataclass
class Case:
    name: str
    kind: str  # "config" or "data"
    apply: Callable  # (cfg dict, ctx) -> None: edits the config dict and/or the tree
    names: str  # a fragment the refusal's message must contain (the key, file or record)
    args: tuple = ()  # extra CLI arguments
    later: bool = False  # allowed to be refused after the model loaded (image content)


class Ctx:
    def __init__(self, base: Path, root: Path, images: Path):
        self.base, self.root, self.images = base, root, images

    def file(self, task: str, split: str) -> Path:
        return self.root / "Instructions_Original" / task / f"{split}.json"

    def rows(self, task: str, split: str) -> list:
        return json.loads(self.file(task, split).read_text())

    def write(self, task: str, split: str, rows) -> None:
        self.file(task, split).write_text(json.dumps(rows))

    def edit(self, task: str, split: str, k: int, fn: Callable) -> None:
        rows = self.rows(task, split)
        fn(rows[k])
        self.write(task, split, rows)


def _set(path: str, value) -> Callable:
    def apply(cfg, ctx):
        node = cfg
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return apply


def _raw_config(text: bytes) -> Callable:
    def apply(cfg, ctx):
        ctx.raw_config = text
    return apply


def _edit(task, split, k, fn) -> Callable:
    return lambda cfg, ctx: ctx.edit(task, split, k, fn)


def _file_bytes(task, split, make: Callable[[Ctx], bytes]) -> Callable:
    def apply(cfg, ctx):
        ctx.file(task, split).write_bytes(make(ctx))
    return apply


def _image(rel: str, make: Callable[[Path], None]) -> Callable:
    def apply(cfg, ctx):
        p = ctx.images / rel
        p.unlink()
        make(p)
    return apply


def _corrupt_png(p: Path) -> None:
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 8)


def _symlink_to_text(p: Path) -> None:
    text = p.parent / "notes.txt"
    text.write_text("not an image")
    os.symlink(text, p)


def _bomb(p: Path) -> None:
    """A PNG whose header says 20000 x 20000 (4e8 pixels); a few hundred kB on disk."""
    Image.new("1", (20000, 20000)).save(p, optimize=True)


def _pop(key):
    return lambda r: r.pop(key)


def _put(key, value):
    return lambda r: r.__setitem__(key, value)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


CONFIG_CASES = [
    Case("lr NaN", "config", _set("train.lr", float("nan")), "train.lr"),
    Case("lr negative", "config", _set("train.lr", -1e-3), "train.lr"),
    Case("lr infinite", "config", _set("train.lr", float("inf")), "train.lr"),
    Case("adapter alpha inf", "config", _set("adapter.alpha", float("inf")), "adapter.alpha"),
    Case("adapter r 0", "config", _set("adapter.r", 0), "adapter.r"),
    Case("max_new_tokens huge", "config", _set("eval.max_new_tokens", {"ImageNet": 100_000_000}), "eval.max_new_tokens"),
    Case("max_new_tokens 0", "config", _set("eval.max_new_tokens", 0), "eval.max_new_tokens"),
    Case("max_test -1", "config", _set("data.max_test", -1), "data.max_test"),
    Case("bootstrap -3", "config", _set("eval.bootstrap", -3), "eval.bootstrap"),
    Case("batch_size 0", "config", _set("train.batch_size", 0), "train.batch_size"),
    Case("batch_size a word", "config", _set("train.batch_size", "eight"), "train.batch_size"),
    Case("grad_accum -2", "config", _set("train.grad_accum", -2), "train.grad_accum"),
    Case("epochs 0", "config", _set("train.epochs", 0), "train.epochs"),
    Case("weight_decay NaN", "config", _set("train.weight_decay", float("nan")), "train.weight_decay"),
    Case("adam beta 1.5", "config", _set("train.adam_betas", [0.9, 1.5]), "train.adam_betas"),
    Case("unknown schedule", "config", _set("train.schedule", "sawtooth"), "train.schedule"),
    Case("per-task lr NaN", "config", _set("train.per_task", {"ImageNet": {"lr": float("nan")}}), "lr"),
    Case("eval batch 0", "config", _set("eval.batch_size", 0), "eval.batch_size"),
    Case("volume 1.5", "config", _set("data.volume", 1.5), "data.volume"),
    Case("volume 0", "config", _set("data.volume", 0.0), "data.volume"),
    Case("unknown key", "config", _set("train.lrr", 1e-3), "train.lrr"),
    Case("unknown section", "config", _set("trainer", {"lr": 1}), "trainer"),
    Case("unknown task", "config", _set("tasks.order", ["ImageNet", "Sudoku"]), "Sudoku"),
    Case("task twice", "config", _set("tasks.order", ["ImageNet", "ImageNet"]), "ImageNet"),
    Case("unknown method", "config", _set("method.name", "forgetless"), "forgetless"),
    Case("unknown backbone", "config", _set("model.name", "gpt-9"), "gpt-9"),
    Case("name escapes runs/", "config", _set("name", "../victim"), "name"),
    Case("seed a word", "config", _set("seed", "lucky"), "seed"),
    Case("missing plugin file", "config", _set("plugins", ["nowhere/plugin.py"]), "nowhere/plugin.py"),
    Case("config not UTF-8", "config", _raw_config("seed: 0\nname: caf\xe9\n".encode("latin-1")), "cfg.yaml"),
    Case("config YAML syntax", "config", _raw_config(b"train: {lr: [1e-3\n"), "cfg.yaml"),
    Case("config a list", "config", _raw_config(b"- 1\n- 2\n"), "cfg.yaml"),
    Case("--set bad YAML", "config", lambda cfg, ctx: None, "train.batch_size", args=("--set", "train.batch_size=[1")),
    Case("--set without =", "config", lambda cfg, ctx: None, "train.batch_size", args=("--set", "train.batch_size")),
    Case("data.paths to nowhere", "config", lambda cfg, ctx: _set("data.paths", {"ImageNet": {"train": str(ctx.base / "none.json")}})(cfg, ctx),
         "none.json"),
]

IN, GR = "ImageNet", "Grounding"
DATA_CASES = [
    Case("train file missing", "data", lambda cfg, ctx: ctx.file(IN, "train").unlink(), "train"),
    Case("test file missing", "data", lambda cfg, ctx: ctx.file(GR, "test").unlink(), "test"),
    Case("train file empty list", "data", lambda cfg, ctx: ctx.write(IN, "train", []), "train.json"),
    Case("test file empty list", "data", lambda cfg, ctx: ctx.write(GR, "test", []), "test.json"),
    Case("train file truncated JSON", "data", _file_bytes(IN, "train", lambda ctx: ctx.file(IN, "train").read_bytes()[:-7]), "train.json"),
    Case("train file an object", "data", lambda cfg, ctx: ctx.write(IN, "train", {"data": []}), "train.json"),
    Case("train file a directory", "data", lambda cfg, ctx: (ctx.file(IN, "train").unlink(), ctx.file(IN, "train").mkdir()), "train.json"),
    Case("train file binary", "data", _file_bytes(IN, "train", lambda ctx: bytes(range(256)) * 4), "train.json"),
    Case("train file UTF-16", "data", _file_bytes(IN, "train", lambda ctx: ctx.file(IN, "train").read_text().encode("utf-16")), "train.json"),
    Case("train file Latin-1", "data", _file_bytes(IN, "train", lambda ctx: json.dumps([_train(IN, 0) | {"id": "caf\xe9"}], ensure_ascii=False).encode("latin-1")), "train.json"),
    Case("train file nested 100000 deep", "data", _file_bytes(IN, "train", lambda ctx: _nested(100_000)), "train.json"),
    Case("record a string", "data", lambda cfg, ctx: ctx.write(IN, "train", ctx.rows(IN, "train")[:-1] + ["hello"]), "record 7"),
    Case("record without id", "data", _edit(IN, "train", 2, _pop("id")), "record 2"),
    Case("record without conversations", "data", _edit(IN, "train", 3, _pop("conversations")), "ImageNet-3"),
    Case("conversations not a list", "data", _edit(IN, "train", 3, _put("conversations", "hi")), "ImageNet-3"),
    Case("odd number of turns", "data", _edit(IN, "train", 1, lambda r: r["conversations"].pop()), "ImageNet-1"),
    Case("roles swapped", "data", _edit(IN, "train", 1, lambda r: r["conversations"].reverse()), "ImageNet-1"),
    Case("empty answer", "data", _edit(IN, "train", 4, lambda r: r["conversations"][1].update(value="  ")), "ImageNet-4"),
    Case("duplicate id", "data", _edit(IN, "train", 5, _put("id", "ImageNet-0")), "ImageNet-0"),
    Case("image path absolute", "data", _edit(IN, "train", 0, _put("image", "/etc/passwd")), "ImageNet-0"),
    Case("image path escapes root", "data", _edit(IN, "train", 0, _put("image", "../../secret.png")), "ImageNet-0"),
    Case("image path empty", "data", _edit(IN, "train", 0, _put("image", "")), "ImageNet-0"),
    Case("image path a number", "data", _edit(IN, "train", 0, _put("image", 7)), "ImageNet-0"),
    Case("image file missing", "data", lambda cfg, ctx: (ctx.images / "imagenet/3.png").unlink(), "imagenet/3.png"),
    Case("image path a directory", "data", _edit(IN, "train", 0, _put("image", "imagenet")), "imagenet"),
    Case("test record without text", "data", _edit(IN, "test", 0, _pop("text")), "ImageNet-t0"),
    Case("test record empty answer", "data", _edit(IN, "test", 1, _put("answer", "")), "ImageNet-t1"),
    Case("test record without answer", "data", _edit(IN, "test", 1, _pop("answer")), "ImageNet-t1"),
    Case("duplicate question_id", "data", _edit(IN, "test", 1, _put("question_id", "ImageNet-t0")), "ImageNet-t0"),
    Case("box of five numbers", "data", _edit(GR, "test", 0, _put("answer_bbox", "[0.1, 0.2, 0.3, 0.4, 0.5]")), "Grounding-t0"),
    Case("box out of range", "data", _edit(GR, "test", 1, _put("answer_bbox", "[0.1, 0.2, 1.3, 0.4]")), "Grounding-t1"),
    Case("grounding test without box", "data", _edit(GR, "test", 1, _pop("answer_bbox")), "Grounding-t1"),
    Case("corrupt PNG", "data", _image("imagenet/5.png", _corrupt_png), "imagenet/5.png", later=True),
    Case("symlink to a text file", "data", _image("grounding/2.png", _symlink_to_text), "grounding/2.png", later=True),
    Case("decompression bomb", "data", _image("imagenet/t1.png", _bomb), "imagenet/t1.png", later=True),
]


# ----------------------------------------------------------------------------- running one case


OUTCOMES = ("refused before load", "refused later", "crashed", "accepted")


@dataclass
class Result:
    case: Case
    outcome: str
    message: str


def run_case(case: Case, base: Path, monkeypatch) -> Result:
    """Build the tree and config, break them as ``case`` says, run ``coin run``, classify."""
    import coin.engine.run as engine_run
    from coin.cli import main

    base.mkdir(parents=True, exist_ok=True)
    root, images = write_tree(base)
    ctx = Ctx(base, root, images)
    ctx.raw_config = None
    cfg = copy.deepcopy(TINY)
    cfg["data"] = {"benchmark": "coin", "root": str(root), "image_root": str(images)}
    case.apply(cfg, ctx)
    cfg_file = base / "cfg.yaml"
    cfg_file.write_bytes(ctx.raw_config if ctx.raw_config is not None else yaml.safe_dump(cfg).encode())

    loaded = []
    real = engine_run.load_model

    def spy(*a, **k):
        loaded.append(True)
        return real(*a, **k)

    monkeypatch.setattr(engine_run, "load_model", spy)
    err = _Capture()
    monkeypatch.setattr(sys, "stderr", err)
    try:
        code = main(["run", "--config", str(cfg_file), "--out", str(base / "run"), "--quiet", *case.args])
    except SystemExit as e:  # argparse
        code = e.code if isinstance(e.code, int) else 2
    except BaseException as e:  # noqa: BLE001 - the battery counts tracebacks
        return Result(case, "crashed", f"{type(e).__name__}: {e}")
    finally:
        monkeypatch.undo()
    message = next((line for line in err.text.splitlines() if line.strip()), "")
    if code == 0:
        return Result(case, "accepted", "exit 0")
    return Result(case, "refused later" if loaded else "refused before load", f"exit {code}: {err.text.strip()}")


class _Capture:
    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s
        return len(s)

    def flush(self):
        pass


def table(results: list[Result]) -> str:
    """The battery's table: per kind, how many cases ended each way, then every case's line."""
    lines = [f"{'kind':8} {'tried':>5} " + " ".join(f"{o:>19}" for o in OUTCOMES)]
    for kind in ("config", "data"):
        rs = [r for r in results if r.case.kind == kind]
        lines.append(f"{kind:8} {len(rs):5d} " + " ".join(f"{sum(r.outcome == o for r in rs):19d}" for o in OUTCOMES))
    lines.append("")
    for r in results:
        first = r.message.splitlines()[0] if r.message else ""
        lines.append(f"{r.case.kind:6} | {r.case.name:30} | {r.outcome:19} | {first[:150]}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the test


def test_the_whole_bad_input_battery(tmp_path):
    mp = pytest.MonkeyPatch()
    results = [run_case(case, tmp_path / f"c{k:02d}", mp) for k, case in enumerate(CONFIG_CASES + DATA_CASES)]
    print("\n" + table(results))
    assert len(CONFIG_CASES) >= 24 and len(DATA_CASES) >= 30
    bad = [r for r in results if r.outcome in ("crashed", "accepted")]
    assert not bad, "\n".join(f"{r.case.name}: {r.outcome}: {r.message}" for r in bad)
    early = [r for r in results if r.outcome == "refused later" and not r.case.later]
    assert not early, "refused only after the model loaded: " + ", ".join(r.case.name for r in early)
    unnamed = [r for r in results if r.case.names not in r.message]
    assert not unnamed, "\n".join(f"{r.case.name}: message does not name {r.case.names!r}: {r.message}" for r in unnamed)


def test_the_valid_tree_runs_and_a_bom_is_read(tmp_path):
    """The battery's baseline: the unbroken tree, its test file saved with a UTF-8 BOM, runs to the end."""
    mp = pytest.MonkeyPatch()

    def bom(cfg, ctx):
        p = ctx.file("ImageNet", "test")
        p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())

    result = run_case(Case("BOM", "data", bom, ""), tmp_path / "ok", mp)
    assert result.outcome == "accepted", result.message
    assert json.loads((tmp_path / "ok" / "run" / "matrix.json").read_text())["tasks"] == ["ImageNet", "Grounding"]


if __name__ == "__main__":  # python tests/test_fault_battery.py: the table alone
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        os.environ.setdefault("COIN_CACHE", str(Path(d) / "cache"))
        mp = pytest.MonkeyPatch()
        print(table([run_case(c, Path(d) / f"c{k:02d}", mp) for k, c in enumerate(CONFIG_CASES + DATA_CASES)]))
