"""The released CoIN tree as it is (issue #28): val.json test files, the family folders, Qwen-VL's file set, the
commands that fetch what is missing.

The fixture is written in the release's exact layout: ``Instructions_Original/<Task>/train.json`` and
``test.json``, or ``val.json`` for TextVQA, VizWiz and VQAv2 (what the original read), an
``Instructions_Diverse/`` folder for some tasks, ``Instructions_Qwen/`` in Qwen-VL's own form
(``user``/``assistant`` turns, ``Picture 1: <img>path</img>``), and tiny PNGs under a separate image root
in the source datasets' folders (``COCO2014/train2014``, ``GQA/images``...).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from coin.cli import main
from coin.config import DataConfig
from coin.tasks import ORDERS, get_task

VAL_TASKS = ("TextVQA", "VizWiz", "VQAv2")  # the original read their tests from val.json
IMAGES = {  # task -> (train image folder, test image folder), under the image root
    "ScienceQA": ("ScienceQA/train/1", "ScienceQA/test/7"),
    "TextVQA": ("TextVQA/train_images", "TextVQA/train_images"),
    "ImageNet": ("ImageNet/train/n01440764", "ImageNet/val"),
    "GQA": ("GQA/images", "GQA/images"),
    "VizWiz": ("VizWiz/train", "VizWiz/val"),
    "Grounding": ("COCO2014/train2014", "COCO2014/train2014"),
    "VQAv2": ("COCO2014/train2014", "COCO2014/val2014"),
    "OCR-VQA": ("OCR-VQA/images", "OCR-VQA/images"),
}
DIVERSE_LINE = {"GQA": "Respond to the question briefly, using only one word or a phrase."}  # the paper's Type2


def _answer(task: str, k: int) -> str:
    return {"ScienceQA": "AB"[k % 2], "Grounding": f"[0.{k + 1}0, 0.20, 0.60, 0.70]"}.get(task, f"word{k}")


def _prompt(task: str, k: int, line: str | None = None) -> str:
    spec = get_task(task)
    if task == "Grounding":
        return (line or spec.instruction).format(f"the object number {k}")
    question = f"What is shown in picture {k}?" + ("\nA. cat\nB. dog" if task == "ScienceQA" else "")
    return f"{question}\n{line or spec.instruction}"


def _write(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))


def _png(path: Path, k: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 20), ((60 * k) % 256, 120, 200)).save(path, format="PNG")


def _records(task: str, line: str | None = None) -> tuple[list, list]:
    train_dir, test_dir = IMAGES[task]
    train = [{"id": f"{task}-{k}", "image": f"{train_dir}/{task}_{k}.png",
              "conversations": [{"from": "human", "value": "<image>\n" + _prompt(task, k, line)},
                                {"from": "gpt", "value": _answer(task, k)}]} for k in range(4)]
    test = []
    for k in range(2):
        rec = {"question_id": f"{task}-q{k}", "image": f"{test_dir}/{task}_t{k}.png",
               "text": _prompt(task, 10 + k, line), "answer": _answer(task, k)}
        if task == "Grounding":
            rec.update(answer_bbox=_answer(task, k), size=[24, 20])
        test.append(rec)
    return train, test


def release_tree(tmp: Path, tasks=tuple(ORDERS["paper"]), diverse=(), images: bool = True,
                 diverse_dir: str = "Instructions_Diverse") -> tuple[Path, Path]:
    """(data root, image root): the release's files for ``tasks``, ``diverse`` tasks also in ``diverse_dir``."""
    root, image_root = tmp / "CoIN", tmp / "cl_dataset"
    for task in tasks:
        folder = get_task(task).folder
        train, test = _records(task)
        _write(root / "Instructions_Original" / folder / "train.json", train)
        _write(root / "Instructions_Original" / folder / ("val.json" if task in VAL_TASKS else "test.json"), test)
        if task in diverse:
            train, test = _records(task, DIVERSE_LINE[task])
            _write(root / diverse_dir / folder / "train.json", train)
            _write(root / diverse_dir / folder / "test.json", test)
        if images:
            for k, rec in enumerate(train + test):
                _png(image_root / rec["image"], k)
    return root, image_root


def _dry_run(capsys, *sets: str) -> tuple[int, str]:
    code = main(["run", "--dry-run", *[a for s in sets for a in ("--set", s)]])
    return code, capsys.readouterr().out


# --------------------------------------------------------------------------- 2. test file names
def test_locate_finds_val_json_where_the_release_has_it(tmp_path):
    from coin.benchmarks.layout import locate

    root, _ = release_tree(tmp_path)
    cfg = DataConfig(benchmark="coin", root=str(root))
    for task in ORDERS["paper"]:
        src = locate(root, "original", task, "test", cfg)
        assert src.path.name == ("val.json" if task in VAL_TASKS else "test.json"), task
        assert src.derive is None
    assert get_task("TextVQA").test_files == ("test.json", "val.json")
    assert get_task("GQA").test_files == ("test.json",)
    # a test.json beside val.json wins (coin's builders write test.json), in the declared order
    folder = root / "Instructions_Original" / "VizWiz"
    (folder / "test.json").write_text((folder / "val.json").read_text())
    assert locate(root, "original", "VizWiz", "test", cfg).path.name == "test.json"


def test_the_whole_release_tree_loads(tmp_path):
    """Every task of the release's layout loads, val.json tests included (the run's own loader)."""
    from coin.benchmarks.load import load_benchmark

    root, image_root = release_tree(tmp_path)
    cfg = DataConfig(benchmark="coin", root=str(root), image_root=str(image_root))
    bench = load_benchmark(cfg, list(ORDERS["paper"]), seed=0, protocols={"TextVQA": "single"})
    assert {t: len(v) for t, v in bench.test.items()} == dict.fromkeys(ORDERS["paper"], 2)
    assert bench.test["VQAv2"][0].image_path.endswith("COCO2014/val2014/VQAv2_t0.png")


# --------------------------------------------------------------------------- 13. the dry run
def test_dry_run_names_the_file_used_and_prints_fetch_commands_for_what_is_missing(tmp_path, capsys):
    from coin.benchmarks.coin.benchmark import SOURCES

    root, image_root = release_tree(tmp_path)
    base = ("data.benchmark=coin", f"data.root={root}", f"data.image_root={image_root}",
            "data.answers.TextVQA=TextVQA_0.5.1_val.json")
    (root / "TextVQA_0.5.1_val.json").write_text(json.dumps({"data": []}))
    code, out = _dry_run(capsys, *base)
    assert code == 0, out
    assert "MISSING" not in out and "to fetch" not in out
    for task in VAL_TASKS:  # the file used, per task and split
        folder = get_task(task).folder
        assert f"test Instructions_Original/{folder}/val.json (as released)" in out
    assert "train Instructions_Original/GQA/train.json (as released); test Instructions_Original/GQA/test.json" in out

    # take away one task's JSON, one image source, the VQAv2 test's COCO val2014 and the answer file
    (root / "Instructions_Original" / "OCRVQA" / "train.json").unlink()
    for gone in ("GQA", "COCO2014/val2014"):
        for p in sorted((image_root / gone).rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        (image_root / gone).rmdir()
    (root / "TextVQA_0.5.1_val.json").unlink()
    code, out = _dry_run(capsys, *base)
    assert code == 1
    missing = out.split("MISSING (", 1)[1]
    assert f"{root}/Instructions_Original/OCRVQA/train.json" in missing
    assert f"{image_root}/GQA/images (images of GQA)" in missing
    assert f"{image_root}/COCO2014/val2014 (images of VQAv2)" in missing
    fetch = out.split("to fetch", 1)[1]
    assert f"huggingface-cli download Zacks-Chen/CoIN --repo-type dataset --local-dir {root}" in fetch
    assert f"wget -c https://downloads.cs.stanford.edu/nlp/data/gqa/images.zip -P {image_root}/GQA" in fetch
    assert f"wget -c http://images.cocodataset.org/zips/val2014.zip -P {image_root}/COCO2014" in fetch
    assert "train2014.zip" not in fetch and "textvqa/images" not in fetch  # only what is missing
    assert (f"wget -c https://dl.fbaipublicfiles.com/textvqa/data/TextVQA_0.5.1_val.json -O "
            f"{root}/TextVQA_0.5.1_val.json") in fetch

    # nothing there at all: every task's image source is listed, with the release's command
    code, out = _dry_run(capsys, "data.benchmark=coin", f"data.root={tmp_path}/none",
                         f"data.image_root={tmp_path}/no-images")
    fetch = out.split("to fetch", 1)[1]
    for task in ORDERS["paper"]:
        for f in SOURCES.images[task]:
            if not f.optional:
                assert f.name in fetch and f"{tmp_path}/no-images/{f.folder}" in fetch
    assert "Instructions_Original/TextVQA/test.json (also accepted: val.json)" in out
    # the table is one structure, a row per source (a README can be checked against it)
    assert set(SOURCES.images) == set(ORDERS["paper"])
    rows = SOURCES.rows()
    assert [r[1] for r in rows if r[0] == "COCO train2014 images"] == ["Grounding, VQAv2"]
    assert rows[0][3] == ("huggingface-cli download Zacks-Chen/CoIN --repo-type dataset --local-dir {root}",)


# --------------------------------------------------------------------------- 4. the family folders
@pytest.mark.parametrize("diverse_dir", ["Instructions_Diverse", "Instruction_Type2"])
def test_diverse_reads_the_release_folder_when_present(tmp_path, diverse_dir):
    from coin.benchmarks.load import load_benchmark
    from coin.benchmarks.layout import locate

    root, image_root = release_tree(tmp_path, ("GQA", "VizWiz"), diverse=("GQA",), diverse_dir=diverse_dir)
    cfg = DataConfig(benchmark="coin", root=str(root), image_root=str(image_root), instructions="diverse")
    src = locate(root, "diverse", "GQA", "train", cfg)
    assert src.path == root / diverse_dir / "GQA" / "train.json" and src.derive is None
    assert "as released" in src.origin
    viz = locate(root, "diverse", "VizWiz", "test", cfg)
    assert viz.path.name == "val.json" and viz.derive == "diverse"
    assert viz.origin == f"rewritten with coin's diverse instruction lines (no {diverse_dir}/VizWiz/ under {root})"
    (root / diverse_dir / "VizWiz").mkdir()
    assert locate(root, "diverse", "VizWiz", "test", cfg).origin.endswith(f"(no test file in {diverse_dir}/VizWiz/ "
                                                                          f"under {root})")
    (root / diverse_dir / "VizWiz").rmdir()
    bench = load_benchmark(cfg, ["GQA", "VizWiz"], seed=0)
    released = json.loads((root / diverse_dir / "GQA" / "train.json").read_text())
    assert bench.train["GQA"][0].prompt == released[0]["conversations"][0]["value"].replace("<image>\n", "")


def test_diverse_without_its_folder_is_rewritten_and_the_dry_run_says_so(tmp_path, capsys):
    from coin.benchmarks.load import load_benchmark

    root, image_root = release_tree(tmp_path, ("GQA", "VizWiz"))
    cfg = DataConfig(benchmark="coin", root=str(root), image_root=str(image_root), instructions="diverse")
    bench = load_benchmark(cfg, ["GQA", "VizWiz"], seed=0)
    assert bench.train["GQA"][0].prompt.endswith("\nRespond to the question briefly, using only one word or a phrase.")
    code, out = _dry_run(capsys, "data.benchmark=coin", f"data.root={root}", f"data.image_root={image_root}",
                         "data.instructions=diverse", "tasks.order=[GQA, VizWiz]")
    assert code == 0, out
    assert (f"train Instructions_Original/GQA/train.json rewritten with coin's diverse instruction lines "
            f"(no Instructions_Diverse/ under {root})") in out
    assert "test Instructions_Original/VizWiz/val.json rewritten with coin's diverse instruction lines" in out


def test_run_log_folder_and_report_say_where_the_prompts_came_from(tmp_path, micro_config):
    """A run on the release's layout: GQA's diverse files as released, VizWiz's rewritten (its val.json read)."""
    from coin.config_load import from_dict
    from coin.api import run

    root, image_root = release_tree(tmp_path, ("GQA", "VizWiz"), diverse=("GQA",))
    micro_config["data"] = {"benchmark": "coin", "root": str(root), "image_root": str(image_root),
                            "instructions": "diverse"}
    micro_config["tasks"] = {"order": ["GQA", "VizWiz"]}
    micro_config["eval"]["bootstrap"] = 0
    logs: list[str] = []
    out = tmp_path / "run"
    run(from_dict(micro_config), out, progress=False, log=logs.append)
    text = "\n".join(logs)
    assert "data sources (instructions diverse)" in text
    assert "train Instructions_Diverse/GQA/train.json (as released: the paper's own diverse prompts)" in text
    assert (f"test Instructions_Original/VizWiz/val.json rewritten with coin's diverse instruction lines "
            f"(no Instructions_Diverse/VizWiz/ under {root})") in text
    sources = json.loads((out / "data_sources.json").read_text())
    assert sources["instructions"] == "diverse"
    assert sources["tasks"]["GQA"]["train"]["derive"] is None
    assert sources["tasks"]["VizWiz"]["test"]["derive"] == "diverse"
    assert sources["tasks"]["VizWiz"]["test"]["path"].endswith("Instructions_Original/VizWiz/val.json")
    report = (out / "report.md").read_text()
    prompts = report.split("## Prompts", 1)[1].split("\n## ", 1)[0]
    assert "1 task(s) read as released (the paper's own diverse prompts), 1 rewritten" in prompts
    assert "Instructions_Diverse/GQA/train.json (as released" in prompts
    assert "Instructions_Original/VizWiz/val.json rewritten with coin's diverse instruction lines" in prompts


# --------------------------------------------------------------------------- 7b. Qwen-VL's file set
def _qwen_tree(tmp_path: Path) -> tuple[Path, Path]:
    """The release for GQA and VizWiz, and Instructions_Qwen/GQA/train.json in Qwen-VL's own form."""
    root, image_root = release_tree(tmp_path, ("GQA", "VizWiz"))
    train, _ = _records("GQA")
    qwen = []
    for k, rec in enumerate(train):
        where = f"./cl_dataset/{rec['image']}" if k % 2 else str(image_root / rec["image"])  # both forms seen
        question = rec["conversations"][0]["value"].replace("<image>\n", "")
        qwen.append({"id": f"identity_{k}", "conversations": [
            {"from": "user", "value": f"Picture 1: <img>{where}</img>\n{question}"},
            {"from": "assistant", "value": rec["conversations"][1]["value"]}]})
    _write(root / "Instructions_Qwen" / "GQA" / "train.json", qwen)
    return root, image_root


def test_qwen_vl_chat_binds_qwen_s_file_set():
    from coin.config_load import from_dict

    qwen = {"name": "qwen-vl-chat", "path": "checkpoints/Qwen-VL-Chat", "trust_remote_code": True}
    assert from_dict({"data": {"benchmark": "coin", "root": "x"}, "model": qwen}).data.file_set == "qwen"
    assert from_dict({"data": {"benchmark": "coin", "root": "x"}}).data.file_set == "auto"
    assert from_dict({"data": {"benchmark": "coin", "root": "x", "file_set": "llava"}, "model": qwen}).data.file_set \
        == "llava"
    with pytest.raises(Exception, match="data.file_set must be one of auto, llava, qwen"):
        from_dict({"data": {"benchmark": "coin", "root": "x", "file_set": "chatml"}})


def test_instructions_qwen_is_read_for_qwen_s_file_set(tmp_path):
    from coin.benchmarks.load import load_benchmark
    from coin.benchmarks.layout import locate

    root, image_root = _qwen_tree(tmp_path)
    cfg = DataConfig(benchmark="coin", root=str(root), image_root=str(image_root), file_set="qwen")
    src = locate(root, "original", "GQA", "train", cfg)
    assert src.path == root / "Instructions_Qwen" / "GQA" / "train.json" and "Qwen-VL's file set" in src.origin
    assert locate(root, "original", "GQA", "test", cfg).path.name == "test.json"  # evaluated on the LLaVA tests
    assert "no Instructions_Qwen/VizWiz/train.json" in locate(root, "original", "VizWiz", "train", cfg).origin
    bench = load_benchmark(cfg, ["GQA", "VizWiz"], seed=0)
    llava = load_benchmark(DataConfig(benchmark="coin", root=str(root), image_root=str(image_root)), ["GQA"], seed=0)
    assert [(s.prompt, s.answer, s.image) for s in bench.train["GQA"]] == \
        [(s.prompt, s.answer, s.image) for s in llava.train["GQA"]]  # the same samples, read from Qwen's form
    assert [s.id for s in bench.train["GQA"]] == [f"identity_{k}" for k in range(4)]


def test_the_dry_run_of_a_qwen_vl_chat_config_names_instructions_qwen(tmp_path, capsys):
    root, image_root = _qwen_tree(tmp_path)
    model = ("model.name=qwen-vl-chat", f"model.path={tmp_path}", "model.trust_remote_code=true")
    code, out = _dry_run(capsys, "data.benchmark=coin", f"data.root={root}", f"data.image_root={image_root}",
                         "tasks.order=[GQA, VizWiz]", *model)
    assert "file set qwen" in out
    assert "GQA        train Instructions_Qwen/GQA/train.json (as released: Qwen-VL's file set" in out
    assert f"train Instructions_Original/VizWiz/train.json (as released; no Instructions_Qwen/VizWiz/train.json" in out


@pytest.mark.parametrize("config, expected", [
    ("llava-1.5-7b/lora.yaml", ["huggingface-cli download lmsys/vicuna-7b-v1.5 --local-dir checkpoints/vicuna-7b-v1.5",
                                "huggingface-cli download openai/clip-vit-large-patch14-336",
                                "pretrain-vicuna-7b-v1.5 mm_projector.bin --local-dir checkpoints/llava-v1.5-7b-pretrain"]),
    ("llava-1.5-13b/lora.yaml", ["lmsys/vicuna-13b-v1.5", "pretrain-vicuna-13b-v1.5 mm_projector.bin"]),
    ("minigpt-v2/lora.yaml", ["meta-llama/Llama-2-7b-chat-hf", "eva_vit_g.pth -O checkpoints/eva_vit_g.pth",
                              "checkpoint_stage2.pth"]),
    ("qwen-vl-chat/lora.yaml", ["huggingface-cli download Qwen/Qwen-VL-Chat --local-dir checkpoints/Qwen-VL-Chat"]),
])
def test_the_dry_run_prints_the_command_that_fetches_each_missing_weight(tmp_path, monkeypatch, capsys, config, expected):
    monkeypatch.chdir(tmp_path)  # the configs' placeholder paths are relative: nothing is there
    path = Path(__file__).resolve().parents[1] / "configs" / "coin" / config
    assert main(["run", "--config", str(path), "--dry-run"]) == 1
    out = capsys.readouterr().out
    block = out.split("to fetch the weights", 1)[1]
    for line in expected:
        assert line in block, f"{line!r} not in:\n{block}"


def test_the_readme_carries_every_fetch_command_of_the_sources_table():
    from coin.benchmarks.coin.benchmark import SOURCES

    readme = (Path(__file__).resolve().parents[1] / "docs" / "real-coin.md").read_text()
    for what, _, _, commands in SOURCES.rows():
        for line in commands:
            assert f"`{line}`" in readme, f"docs/real-coin.md lacks the command for {what}: {line}"
