"""Issue #29, defects 4 and 5: an empty task and bad image content are found before any work.

4. An empty ``train.json`` or ``test.json`` passed ``coin data check``, trained every stage and
   then crashed in ``assemble``: now the manifest names the file ("holds no records") and
   ``coin run`` stops before any model loads.
5. Under the default ``data.check_images: exists`` a corrupt PNG, a symlink to a text file and
   a decompression bomb surfaced only when first read, after the model loaded: now every
   distinct image's header is read while the model loads and a bad one stops the run before the
   first step, named by path; ``data.max_image_pixels`` refuses a bomb by its declared size, and
   ``decode`` finds a truncated body before anything loads.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from coin.cli import main
from coin.config_load import from_dict
from coin.data.coin_json import DataError
from coin.engine import run as run_mod

TASK = "ImageNet"


class _Loaded(Exception):
    """load_model was called."""


class _Trained(Exception):
    """A training step or an evaluation (the first reads of an image) was reached."""


@pytest.fixture(scope="module")
def synth_tree(tmp_path_factory):
    """A tiny CoIN-Synth tree (ImageNet only) to copy and spoil."""
    from coin.benchmarks.synth.generator import generate

    root = tmp_path_factory.mktemp("synth") / "tree"
    generate(root, seed=0, n_train=4, n_test=2, n_pretrain=0, tasks=[TASK])
    return root


@pytest.fixture
def tree(synth_tree, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(synth_tree, root)
    return root


def _records(tree: Path, split: str) -> list[dict]:
    return json.loads((tree / "Instructions_Original" / TASK / f"{split}.json").read_text())


def _config(tree: Path, micro_config: dict, **data) -> dict:
    micro_config["data"] = {"benchmark": "coin", "root": str(tree), "image_root": str(tree / "images"), **data}
    micro_config["tasks"] = {"order": [TASK]}
    return micro_config


def _no_model(monkeypatch) -> list[str]:
    """load_model raises (nothing may load); returns the calls made."""
    calls: list[str] = []

    def load(*a, **k):
        calls.append("load_model")
        raise _Loaded

    monkeypatch.setattr(run_mod, "load_model", load)
    return calls


class _Stub:
    """A model that loads in no time; the run must stop before it is used."""

    class model:  # noqa: N801
        @staticmethod
        def to(device):
            return None

    tokenizer = None


def _stub_model(monkeypatch) -> list[str]:
    """load_model returns a stub at once; training and evaluation raise ``_Trained``. Returns the calls."""
    calls: list[str] = []

    def load(*a, **k):
        calls.append("load_model")
        return _Stub()

    def reached(name):
        def fn(*a, **k):
            calls.append(name)
            raise _Trained(name)
        return fn

    monkeypatch.setattr(run_mod, "load_model", load)
    monkeypatch.setattr(run_mod, "answer_limits", reached("answer_limits"))
    monkeypatch.setattr(run_mod, "train_stage", reached("train_stage"))
    monkeypatch.setattr(run_mod, "evaluate_stage", reached("evaluate_stage"))
    return calls


def _run(cfg: dict, out: Path):
    return run_mod.run(from_dict(cfg), out, progress=False, log=lambda *a: None)


# --------------------------------------------------------------------------- 4. an empty task


@pytest.mark.parametrize("split", ["train", "test"])
def test_an_empty_file_is_refused_by_data_check(tree, split, capsys):
    path = tree / "Instructions_Original" / TASK / f"{split}.json"
    path.write_text("[]")
    rc = main(["data", "check", "--root", str(tree), "--image-root", str(tree / "images"), "--tasks", TASK])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert f"{path}: holds no records" in out and "PROBLEMS FOUND" in out
    assert "1 empty file(s)" in out


@pytest.mark.parametrize("split", ["train", "test"])
def test_an_empty_file_stops_a_run_before_the_model_loads(tree, split, tmp_path, micro_config, monkeypatch):
    path = tree / "Instructions_Original" / TASK / f"{split}.json"
    path.write_text("[]")
    calls = _no_model(monkeypatch)
    with pytest.raises(DataError, match="holds no records") as e:
        _run(_config(tree, micro_config), tmp_path / "run")
    assert str(path) in str(e.value) and "data file(s) with no record" in str(e.value)
    assert calls == []
    assert not (tmp_path / "run" / "stages").exists()


# --------------------------------------------------------------------------- 5. image content


def _bomb_png(path: Path, width: int = 20000, height: int = 20000) -> None:
    """A ~100-byte PNG whose header declares ``width`` x ``height`` (its body is one short zlib stream)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _spoil(tree: Path, kind: str) -> Path:
    """Replace the first test record's image by a bad one of ``kind``; returns its path."""
    image = tree / "images" / _records(tree, "test")[0]["image"]
    image.unlink()
    if kind == "corrupt":
        image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0garbage, not a chunk" * 4)
    elif kind == "symlink":
        text = tree / "notes.txt"
        text.write_text("this is a text file, not an image\n" * 10)
        image.symlink_to(text)
    elif kind == "bomb":
        _bomb_png(image)
    elif kind == "truncated":
        noise = Image.effect_noise((256, 256), 64).convert("RGB")
        noise.save(image, format="PNG")
        image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    return image


@pytest.mark.parametrize("kind, reason", [
    ("corrupt", "Error"),  # PIL's own words for a broken file (SyntaxError / UnidentifiedImageError)
    ("symlink", "UnidentifiedImageError"),
    ("bomb", "400000000 pixels exceeds data.max_image_pixels=178956970: its header declares 20000x20000"),
])
def test_a_bad_image_stops_the_default_run_before_the_first_step(tree, kind, reason, tmp_path, micro_config,
                                                                 monkeypatch):
    image = _spoil(tree, kind)
    cfg = _config(tree, micro_config)
    assert from_dict(cfg).data.check_images == "exists"  # the default
    calls = _stub_model(monkeypatch)
    with pytest.raises(DataError) as e:
        _run(cfg, tmp_path / "run")
    message = str(e.value)
    rel = image.relative_to(tree / "images")
    assert f"{TASK} test" in message and f"{rel} (" in message and reason in message, message
    assert "unreadable image" in message and "PROBLEMS FOUND" in message  # coin data check's listing
    assert calls == ["load_model"]  # read while the model loaded; nothing trained or evaluated
    assert not list((tmp_path / "run").glob("stages/*/adapter"))
    assert not list((tmp_path / "run").glob("stages/*/predictions"))


def test_the_header_pass_overlaps_the_real_model_loading(tree, tmp_path, micro_config, monkeypatch):
    """With the tiny built-in model: it loads, the header pass stops the run, nothing trains or evaluates."""
    image = _spoil(tree, "symlink")
    calls = []
    real_load = run_mod.load_model
    monkeypatch.setattr(run_mod, "load_model", lambda *a, **k: calls.append("load_model") or real_load(*a, **k))
    def reached(*a, **k):
        calls.append("trained or evaluated")
        raise _Trained

    monkeypatch.setattr(run_mod, "train_stage", reached)
    monkeypatch.setattr(run_mod, "evaluate_stage", reached)
    with pytest.raises(DataError, match="read while the model loaded") as e:
        _run(_config(tree, micro_config), tmp_path / "run")
    assert str(image.relative_to(tree / "images")) in str(e.value)
    assert calls == ["load_model"]


def test_data_check_names_a_bomb_by_its_pixel_count(tree, capsys):
    image = _spoil(tree, "bomb")
    rc = main(["data", "check", "--root", str(tree), "--image-root", str(tree / "images"), "--tasks", TASK])
    out = capsys.readouterr().out
    assert rc == 1 and "unreadable image" in out, out
    assert f"{image.relative_to(tree / 'images')} (400000000 pixels exceeds data.max_image_pixels=178956970" in out


def test_open_reads_every_header_before_the_model_loads(tree, tmp_path, micro_config, monkeypatch):
    image = _spoil(tree, "bomb")
    calls = _no_model(monkeypatch)
    with pytest.raises(DataError, match="pixels exceeds data.max_image_pixels") as e:
        _run(_config(tree, micro_config, check_images="open"), tmp_path / "run")
    assert str(image.relative_to(tree / "images")) in str(e.value)
    assert calls == []


def test_decode_finds_a_truncated_body_before_the_model_loads(tree, tmp_path, micro_config, monkeypatch):
    image = _spoil(tree, "truncated")
    rel = str(image.relative_to(tree / "images"))
    calls = _stub_model(monkeypatch)
    with pytest.raises(_Trained):  # its header is sound: neither exists nor open finds it
        _run(_config(tree, micro_config), tmp_path / "run-exists")
    with pytest.raises(_Trained):
        _run(_config(tree, micro_config, check_images="open"), tmp_path / "run-open")
    calls = _no_model(monkeypatch)
    with pytest.raises(DataError, match="truncated") as e:
        _run(_config(tree, micro_config, check_images="decode"), tmp_path / "run-decode")
    assert rel in str(e.value) and calls == []


def test_the_pixel_limit_is_configured_and_applies_where_the_models_open_images(tree, tmp_path):
    """One helper opens every image (the check and the models' ``load_image``), under one limit."""
    from coin.config import ConfigError, DataConfig
    from coin.data.images import DEFAULT_MAX_PIXELS, ImageTooLarge, max_pixels, open_image, set_max_pixels
    from coin.models.images import ImageError, load_image

    assert DataConfig().max_image_pixels == DEFAULT_MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS
    for bad in (0, -5):
        with pytest.raises(ConfigError, match="data.max_image_pixels must be >= 1"):
            from_dict({"data": {"max_image_pixels": bad}})
    good = tree / "images" / _records(tree, "test")[0]["image"]  # 64x64
    bomb = tmp_path / "bomb.png"
    _bomb_png(bomb)
    saved = max_pixels()
    try:
        set_max_pixels(64 * 64 - 1)
        with pytest.raises(ImageError, match="4096 pixels exceeds data.max_image_pixels=4095"):
            load_image(str(good), "r1")
        set_max_pixels(None)
        assert load_image(str(good), "r1").size == (64, 64)
        with pytest.raises(ImageError, match=f"{bomb}: 400000000 pixels exceeds"):
            load_image(str(bomb), "r2")
        with pytest.raises(ImageTooLarge):
            open_image(bomb)
        with open_image(bomb, limit=400_000_000) as im:  # above PIL's own limit: honoured, nothing decoded
            assert im.size == (20000, 20000)
        assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS // 2  # PIL's own is left as it was
    finally:
        set_max_pixels(saved)


def test_a_raised_limit_lets_the_run_continue_in_its_folder(tmp_path, micro_config):
    """``data.max_image_pixels`` decides only whether an image is accepted, never a number."""
    from coin.engine.run_folder import prepare_run_dir

    prepare_run_dir(tmp_path, from_dict(micro_config))
    micro_config["data"]["max_image_pixels"] = 500_000_000
    prepare_run_dir(tmp_path, from_dict(micro_config))
