"""Issue #29, defects 6 and 7: values that validate but cannot run, and bare tracebacks on unreadable input.

6. Every number of a config is finite and in range at the config check (``coin.options`` refuses
   NaN/inf at any key, ``coin.config`` bounds the rest), and no run folder holds invalid JSON
   (``coin.io`` writes a non-finite number as null and lists its key under ``"nonfinite"``).
7. A config or data file that is not UTF-8, JSON nested too deeply, a ``--set`` value that is not
   YAML: each ends ``coin`` with exit 2 and one line naming the file (or the key); a UTF-8 BOM is read.

Every test here failed on the code before the fix (4afeb74).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pytest
import yaml
from PIL import Image

from coin.cli import main
from coin.config import ConfigError
from coin.config_load import from_dict, load_config


def _strict(text: str):
    """``json.loads`` as any other JSON reader does it: NaN and Infinity are not JSON."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("coin: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def no_plan(monkeypatch):
    """``coin run --dry-run`` stops after the config check: a config that passes it exits 0 at once."""
    import coin.engine.plan as plan

    monkeypatch.setattr(plan, "describe", lambda cfg, out: ("", []))


# ----------------------------------------------------------------------------- 6. values that cannot run


BAD_VALUES = [
    (["adapter.alpha=.inf"], "adapter.alpha must be a finite number, got inf"),
    (["train.projector_lr=.nan"], "train.projector_lr must be a finite number, got nan"),
    (["model.pretrain.lr=.nan"], "model.pretrain.lr must be a finite number, got nan"),  # a backbone's own key
    (["method=ewc", "method_options.lambda_=.inf"], "method_options.lambda_ must be a finite number, got inf"),
    (["eval.max_new_tokens={ImageNet: 100000000}"], "eval.max_new_tokens.ImageNet must be <= 8192, got 100000000"),
    (["data.max_test=-1"], "data.max_test must be >= 1 (or null for every record), got -1"),
    (["data.max_test=0"], "data.max_test must be >= 1 (or null for every record), got 0"),
    (["data.synth.n_train=-5"], "data.synth.n_train must be in [1, 1000000], got -5"),
    (["data.synth.n_test=0"], "data.synth.n_test must be in [1, 1000000], got 0"),
    (["eval.bootstrap=-3"], "eval.bootstrap must be in [0, 100000], got -3"),
    (["seed=-1"], "seed must be in [0, 4294966], got -1"),
    (["train.weight_decay=-0.1"], "train.weight_decay must be >= 0, got -0.1"),
    (["train.epochs=1e7"], "train.epochs must be <= 1000, got 10000000.0"),
    (["train.per_task={GQA: {epochs: 5000}}"], "train.per_task.GQA.epochs must be <= 1000, got 5000.0"),
    (["adapter.r=100000"], "adapter.r must be <= 8192, got 100000"),
    (["train.num_workers=5000"], "train.num_workers must be in [0, 256] or null, got 5000"),
]


@pytest.mark.parametrize("sets,problem", BAD_VALUES, ids=[s[-1].split("=")[0] for s, _ in BAD_VALUES])
def test_a_value_that_cannot_run_is_refused_naming_its_key(sets, problem, no_plan, capsys):
    with pytest.raises(ConfigError) as e:
        load_config(None, sets)
    assert problem in e.value.problems
    args = [a for s in sets for a in ("--set", s)]
    assert main(["run", "--dry-run", *args]) == 2
    assert problem in capsys.readouterr().err


@dataclass
class Sub:
    rate: float = 1.0


@dataclass
class Opts:
    scale: float = 1.0
    weights: dict[str, float] = field(default_factory=dict)
    per: dict[str, Sub] = field(default_factory=dict)
    points: list = field(default_factory=list)


def test_no_float_key_anywhere_takes_nan_or_inf():
    """The builder's own check, for every dataclass: a ``dict[str, float]`` map, a ``dict[str, Sub]``
    of sections, a list, a plain float without any ``check()`` of its own."""
    from coin.options import option_problems

    assert option_problems(Opts, {"scale": float("-inf")}, "x.") == ["x.scale must be a finite number, got -inf"]
    assert option_problems(Opts, {"weights": {"GQA": 1.0, "VQAv2": float("nan")}}, "x.") == [
        "x.weights.VQAv2 must be a finite number, got nan"]
    assert option_problems(Opts, {"per": {"GQA": {"rate": float("inf")}}}, "x.") == [
        "x.per.GQA.rate must be a finite number, got inf"]
    assert option_problems(Opts, {"points": [0.5, [1.0, float("nan")]]}, "x.") == [
        "x.points[1][1] must be a finite number, got nan"]
    assert option_problems(Opts, {"scale": 2, "weights": {"a": 1e300}}, "x.") == []
    # YAML reads 1e999 (no dot) as a string and the builder as the number: infinity, refused
    with pytest.raises(ConfigError) as e:
        from_dict({"adapter": {"dropout": 0.1, "alpha": "1e999"}})
    assert e.value.problems == ["adapter.alpha must be a finite number, got inf"]


def test_json_writers_never_write_nan(tmp_path):
    from coin.io import atomic_write_json, atomic_write_jsonl, read_json, read_jsonl

    atomic_write_json(tmp_path / "train.json", {"steps": 0, "final_loss": float("nan"), "mean_loss": 0.0,
                                                "extra": {"norms": [1.0, float("inf")]}})
    data = _strict((tmp_path / "train.json").read_text())
    assert data == {"steps": 0, "final_loss": None, "mean_loss": 0.0, "extra": {"norms": [1.0, None]},
                    "nonfinite": ["final_loss", "extra.norms[1]"]}
    assert read_json(tmp_path / "train.json") == data
    atomic_write_json(tmp_path / "rows.json", [{"q": 1, "score": float("-inf")}, {"q": 2, "score": 0.5}])
    assert _strict((tmp_path / "rows.json").read_text()) == [
        {"q": 1, "score": None, "nonfinite": ["score"]}, {"q": 2, "score": 0.5}]
    atomic_write_jsonl(tmp_path / "log.jsonl", [{"step": 1, "loss": float("nan")}, {"step": 2, "loss": 1.5}])
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [_strict(line) for line in lines] == [{"step": 1, "loss": None, "nonfinite": ["loss"]},
                                                 {"step": 2, "loss": 1.5}]
    assert read_jsonl(tmp_path / "log.jsonl")[0]["loss"] is None


def test_a_stage_whose_loss_was_nan_writes_a_valid_train_json(tmp_path):
    """Every batch's loss NaN, skipped (``train.on_nonfinite: skip``): the stage's final loss is NaN, and
    its ``train.json``, written as ``coin.engine.run`` writes it, is still JSON."""
    from tinyvlm import tiny_samples, tiny_vlm

    from coin.adapters import attach_adapter
    from coin.config import AdapterConfig
    from coin.engine.train import train_stage
    from coin.io import atomic_write_json
    from coin.methods import StageContext
    from coin.methods.base import Method

    class Poison(Method):
        name = "poison"

        def loss(self, ctx, batch, outputs, loss):
            return loss * float("nan")

    vlm = tiny_vlm(seed=0)
    attach_adapter(vlm, AdapterConfig(r=2, alpha=4))
    cfg = from_dict({"train": {"batch_size": 2, "checkpoint_every": 0, "num_workers": 0, "on_nonfinite": "skip"}}).train
    stats = train_stage(StageContext(vlm=vlm, task="ColourA", stage=0, tasks=["ColourA"]),
                        tiny_samples(tmp_path, "ColourA", 4), cfg, [Poison()], seed=0, progress=False,
                        log=lambda m: None)
    assert math.isnan(stats.final_loss) and stats.skipped_batches == stats.steps
    atomic_write_json(tmp_path / "train.json", stats.__dict__)
    data = _strict((tmp_path / "train.json").read_text())
    assert data["final_loss"] is None and data["nonfinite"] == ["final_loss"]


# ----------------------------------------------------------------------------- 7. unreadable input


CONFIG_FILES = [
    ("latin-1", "seed: 0\nname: caf\xe9\n".encode("latin-1"), "not valid UTF-8 at byte 17"),
    ("utf-16", "seed: 0\n".encode("utf-16"), "not UTF-8 (looks like UTF-16); re-save as UTF-8"),
    ("utf-16-no-bom", "seed: 0\n".encode("utf-16-le"), "not UTF-8 (looks like UTF-16)"),
    ("nested", b"a: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
    ("yaml-syntax", b"train: {lr: [1e-3\n", "not valid YAML"),
]


@pytest.mark.parametrize("name,content,problem", CONFIG_FILES, ids=[c[0] for c in CONFIG_FILES])
def test_an_unreadable_config_file_is_one_line_naming_it(name, content, problem, tmp_path, no_plan, capsys):
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(content)
    assert main(["run", "--dry-run", "--config", str(path)]) == 2
    err = _one_line_error(capsys)
    assert f"{path}: " in err and problem in err


def test_a_config_file_with_a_utf8_bom_is_read(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + "name: caf\xe9\ntrain: {lr: 0.01}\n".encode())
    cfg = load_config(path)
    assert (cfg.name, cfg.train.lr) == ("caf\xe9", 0.01)
    (tmp_path / "bad.yaml").write_bytes(b"\xef\xbb\xbfname: caf\xe9\n")  # the BOM counted in the byte offset
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid UTF-8 at byte 12"):
        load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize("sets,problem", [
    (["train.batch_size=[1"], "--set train.batch_size: the value '[1' is not valid YAML: expected ',' or ']'"),
    (["train.lr={a: b"], "--set train.lr: the value '{a: b' is not valid YAML"),
    (["train=1", "train.lr=2"], "--set train.lr: another --set gave train a value (1), not a mapping"),
    (["train..lr=2"], "the key 'train..lr' has an empty part"),
], ids=["flow-sequence", "flow-mapping", "below-a-value", "empty-part"])
def test_a_bad_set_is_one_line_naming_its_key(sets, problem, no_plan, capsys):
    assert main(["run", "--dry-run", *[a for s in sets for a in ("--set", s)]]) == 2
    assert problem in _one_line_error(capsys)


DATA_FILES = [
    ("utf-16", lambda rows: json.dumps(rows).encode("utf-16"), "not UTF-8 (looks like UTF-16); re-save as UTF-8"),
    ("utf-16-be", lambda rows: json.dumps(rows).encode("utf-16-be"), "not UTF-8 (looks like UTF-16)"),
    ("latin-1", lambda rows: json.dumps(rows, ensure_ascii=False).encode("latin-1"), "not valid UTF-8 at byte "),
    ("nested", lambda rows: b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
]


def _records(n: int = 2) -> list[dict]:
    return [{"id": f"caf\xe9-{k}", "image": f"{k}.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "a cat"}]} for k in range(n)]


@pytest.mark.parametrize("name,encode,problem", DATA_FILES, ids=[d[0] for d in DATA_FILES])
def test_an_unreadable_data_file_is_a_data_error_naming_it(name, encode, problem, tmp_path):
    from coin.data.coin_json import DataError, load_train

    path = tmp_path / f"{name}.json"
    path.write_bytes(encode(_records()))
    with pytest.raises(DataError) as e:
        load_train(path, tmp_path, "GQA")
    assert str(e.value).startswith(f"{path}: ") and problem in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name,encode,problem", DATA_FILES, ids=[d[0] for d in DATA_FILES])
def test_the_cli_reading_an_unreadable_json_file_exits_2_naming_it(name, encode, problem, tmp_path, capsys):
    path = tmp_path / f"{name}.json"
    path.write_bytes(encode({"matrix": [[80.0, None], [60.0, 70.0]], "by": "caf\xe9"}))
    assert main(["metrics", str(path)]) == 2
    err = _one_line_error(capsys)
    assert f"{path}: " in err and problem in err


def test_a_data_file_with_a_utf8_bom_is_read(tmp_path):
    from coin.data.coin_json import load_train
    from coin.io import read_json, read_jsonl

    path = tmp_path / "train.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_records(), ensure_ascii=False).encode())
    assert [s.id for s in load_train(path, tmp_path, "GQA")] == ["caf\xe9-0", "caf\xe9-1"]
    assert read_json(path) == _records()
    (tmp_path / "p.jsonl").write_bytes(b"\xef\xbb\xbf" + b'{"question_id": 1, "text": "a"}\n')
    assert read_jsonl(tmp_path / "p.jsonl") == [{"question_id": 1, "text": "a"}]


# ----------------------------------------------------------------------------- 7. through ``coin run`` on a CoIN tree


def _tree(base):
    """A two-task CoIN tree in the release's layout, and a config running it (``coin.benchmarks.coin.benchmark``)."""
    root, images = base / "CoIN", base / "images"
    for task, answer in (("ImageNet", "cat"), ("ScienceQA", "A")):
        for split, n in (("train", 4), ("test", 2)):
            if split == "train":
                rows = [{"id": f"{task}-{k}", "image": f"{task}/{k}.png", "conversations": [
                    {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": answer}]}
                    for k in range(n)]
            else:
                rows = [{"question_id": f"{task}-t{k}", "image": f"{task}/t{k}.png", "text": "What is it?",
                         "answer": answer} for k in range(n)]
            path = root / "Instructions_Original" / task / f"{split}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rows))
            for r in rows:
                (images / r["image"]).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (16, 16), (120, 30, 200)).save(images / r["image"])
    cfg = {"data": {"benchmark": "coin", "root": str(root), "image_root": str(images)},
           "tasks": {"order": ["ImageNet", "ScienceQA"]}}
    (base / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return base / "cfg.yaml", root / "Instructions_Original"


class _Loaded(Exception):
    """Raised in place of loading the model: every data file was read by then."""


@pytest.fixture
def stop_at_model(monkeypatch):
    import coin.engine.run as engine_run

    def stop(*a, **k):
        raise _Loaded()

    monkeypatch.setattr(engine_run, "load_model", stop)


def test_coin_run_names_a_utf16_data_file_and_reads_one_with_a_bom(tmp_path, stop_at_model, capsys):
    cfg, folder = _tree(tmp_path)
    train = folder / "ImageNet" / "train.json"
    good = train.read_bytes()
    train.write_bytes(good.decode().encode("utf-16"))
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{train}: not UTF-8 (looks like UTF-16)" in err
    train.write_bytes(b"\xef\xbb\xbf" + good)
    with pytest.raises(_Loaded):  # read, checked and loaded: the run went on to load the model
        main(["run", "--config", str(cfg), "--out", str(tmp_path / "run2"), "--quiet"])
