"""Reports: fake run folders under tmp_path -> report.md/html, PNGs, comparison tables."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml
from PIL import Image

from coin.adapters import ADAPTERS, Adapter, describe
from coin.config import RunConfig
from coin.metrics import mean_std, summarize
from coin.report import heatmap, summary_table, write_comparison, write_report

RANDOM_ORDER = ["ScienceQA", "TextVQA", "ImageNet", "GQA", "VizWiz", "Grounding", "VQAv2", "OCR-VQA"]

# T=3, lower triangle only (future tasks not evaluated). By hand:
# MAA = (80 + (60+70)/2 + (50+40+90)/3) / 3 = 68.33; BWT = (-30 - 30 + 0) / 3 = -20; ACC = 60.
T3_TASKS = ["ScienceQA", "TextVQA", "ImageNet"]
T3_MATRIX = [[80.0, None, None], [60.0, 70.0, None], [50.0, 40.0, 90.0]]


def _t8_matrix(shift: float) -> list[list[float]]:
    """Task i learned at 60 + 4i, losing 5 points per later stage; unlearned tasks at 10 + i.

    By hand (shift 0): MAA = mean_j (60 - j/2) = 58.25, ACC = mean_i (25 + 9i) = 56.5, BWT = -17.5.
    """
    return [[(60 + 4 * i - 5 * (j - i) if i <= j else 10 + i) + shift for i in range(8)] for j in range(8)]


def _write_run(run_dir: Path, tasks: list[str], matrix: list, *, seed: int, method: str, config_extra: dict,
               with_metrics: bool, **fields) -> Path:
    run_dir.mkdir(parents=True)
    config = {"name": run_dir.name, "method": method, "seed": seed, "tasks": {"order": tasks},
              "data": {"instructions": "original", "volume": 1.0}, "adapter": {"r": 128}, **config_extra}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    mj = {"tasks": tasks, "matrix": matrix, "zero_shot": None, "metrics": None, "ci": None,
          "format_share": None, "seed": seed, "method": method, "run_name": run_dir.name, "cost": None}
    mj.update(fields)
    if with_metrics:
        mj["metrics"] = summarize(matrix, zero_shot=mj["zero_shot"])
    (run_dir / "matrix.json").write_text(json.dumps(mj))
    return run_dir


@pytest.fixture
def t3_run(tmp_path: Path) -> Path:
    return _write_run(
        tmp_path / "moe-s0", T3_TASKS, T3_MATRIX, seed=0, method="moelora",
        config_extra={"adapter": {"type": "moelora", "r": 128, "experts": 4}}, with_metrics=False,
        zero_shot=[5.0, 10.0, 0.0],
        ci={"maa": [66.1, 70.2], "bwt": [-22.0, -18.0], "acc": [58.0, 62.0]},
        format_share=[[0.0, None, None], [0.5, 0.1, None], [0.5, 0.8, None]],
        cost={"trainable_params": 1234567, "train_seconds": 3600.5, "eval_seconds": 12.25, "peak_memory_mb": None},
    )


@pytest.fixture
def t8_runs(tmp_path: Path) -> list[Path]:
    return [
        _write_run(tmp_path / f"lora-s{seed}", RANDOM_ORDER, _t8_matrix(2.0 * seed), seed=seed, method="lora",
                   config_extra={}, with_metrics=True, zero_shot=[1.0] * 8)
        for seed in (0, 1)
    ]


def _md_row(md: str, first_cell: str) -> list[str]:
    """The cells of the first Markdown table row whose first cell is ``first_cell``."""
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row {first_cell!r} in:\n{md}")


def _check_png(path: Path, min_w: int = 400, min_h: int = 250) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        assert min_w <= w <= 3000 and min_h <= h <= 3000
        lo_hi = im.convert("L").getextrema()
        assert lo_hi[1] - lo_hi[0] > 100  # something is drawn, not a blank canvas
    return w, h


def _check_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)


def test_write_report_t3(t3_run: Path) -> None:
    md_path = write_report(t3_run)
    assert md_path == t3_run / "report.md"
    for name in ("report.md", "report.html", "heatmap.png", "forgetting.png"):
        assert (t3_run / name).is_file()
    _check_png(t3_run / "heatmap.png")
    _check_png(t3_run / "forgetting.png")
    md = md_path.read_text()

    # Matrix: zero-shot row on top, None cells blank.
    assert _md_row(md, "stage") == ["stage", *T3_TASKS]
    assert _md_row(md, "zero-shot") == ["zero-shot", "5.00", "10.00", "0.00"]
    assert _md_row(md, "after ScienceQA") == ["after ScienceQA", "80.00", "–", "–"]
    assert _md_row(md, "after ImageNet") == ["after ImageNet", "50.00", "40.00", "90.00"]
    # Metrics recomputed from the matrix (none stored), CIs from matrix.json.
    assert _md_row(md, "MAA") == ["MAA", "68.33", "[66.10, 70.20]"]
    assert _md_row(md, "BWT") == ["BWT", "-20.00", "[-22.00, -18.00]"]
    assert _md_row(md, "ACC") == ["ACC", "60.00", "[58.00, 62.00]"]
    assert _md_row(md, "Zero-shot mean")[1] == "5.00"
    assert _md_row(md, "Plasticity")[1] == "80.00"  # mean of the diagonal (80, 70, 90)
    # Per-task forgetting: learned, final, final - learned.
    assert _md_row(md, "TextVQA")[:4] == ["TextVQA", "70.00", "40.00", "-30.00"]
    # Format vs knowledge: 60 error points on TextVQA, 80% of them format errors.
    fmt = [r for r in md.split("## Format vs knowledge errors")[1].splitlines() if r.startswith("| TextVQA")]
    assert fmt[0] == "| TextVQA | 40.00 | 60.00 | 48.00 | 12.00 | 80.0 |"
    assert "| ImageNet | 90.00 | 10.00 | – | – | – |" in md
    # Cost and figure links.
    assert _md_row(md, "trainable parameters") == ["trainable parameters", "1,234,567"]
    assert _md_row(md, "peak memory (MB)") == ["peak memory (MB)", "–"]
    assert "![accuracy matrix heatmap](heatmap.png)" in md
    assert "![forgetting curves](forgetting.png)" in md
    # The adapter as its registry entry summarises it (the report itself names no adapter).
    assert _md_row(md, "adapter")[1] == describe({**RunConfig().to_dict()["adapter"], "type": "moelora", "r": 128,
                                                  "experts": 4})
    assert "experts=4" in _md_row(md, "adapter")[1] and "LoRA rank" not in md

    page = (t3_run / "report.html").read_text()
    _check_self_contained(page)
    img = re.search(r'<img id="heatmap" alt="[^"]*" src="data:image/png;base64,([^"]+)"', page)
    assert img and base64.b64decode(img.group(1)) == (t3_run / "heatmap.png").read_bytes()
    metrics = re.search(r'<table id="metrics">(.*?)</table>', page, re.S)
    assert metrics and "<td>MAA</td><td>68.33</td><td>[66.10, 70.20]</td>" in metrics.group(1)
    assert "<td>after ScienceQA</td><td>80.00</td><td>–</td><td>–</td>" in page


def test_write_report_t8_uses_stored_metrics(t8_runs: list[Path]) -> None:
    run = t8_runs[0]
    mj = json.loads((run / "matrix.json").read_text())
    mj["metrics"]["maa"] = 12.34  # the engine's numbers win over a recomputation
    (run / "matrix.json").write_text(json.dumps(mj))
    md = write_report(run).read_text()
    assert _md_row(md, "MAA")[:2] == ["MAA", "12.34"]
    assert _md_row(md, "ACC") == ["ACC", "56.50", "–"]
    assert _md_row(md, "BWT")[1] == "-17.50"
    assert _md_row(md, "stage") == ["stage", *RANDOM_ORDER]
    assert "## Format vs knowledge errors" not in md and "## Cost" not in md
    _check_self_contained((run / "report.html").read_text())


def test_heatmap_size_scales_and_is_deterministic(tmp_path: Path, t3_run: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    heatmap(_t8_matrix(0.0), RANDOM_ORDER, a, title="t8", zero_shot=[None] * 8)
    heatmap(_t8_matrix(0.0), RANDOM_ORDER, b, title="t8", zero_shot=[None] * 8)
    assert a.read_bytes() == b.read_bytes()
    w8, h8 = _check_png(a)
    heatmap(T3_MATRIX, T3_TASKS, tmp_path / "c.png")
    w3, h3 = _check_png(tmp_path / "c.png")
    assert w8 > w3 and h8 > h3
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_comparison_groups_seeds(tmp_path: Path, t8_runs: list[Path]) -> None:
    # MoELoRA over the same eight tasks (runs of other tasks are not compared: tests/test_comparable.py)
    moe = _write_run(tmp_path / "moe-s0", RANDOM_ORDER, _t8_matrix(10.08), seed=0, method="moelora",
                     config_extra={"adapter": {"type": "moelora", "r": 128, "experts": 4}}, with_metrics=False,
                     ci={"maa": [66.1, 70.2], "bwt": [-22.0, -18.0], "acc": [58.0, 62.0]})
    out = tmp_path / "cmp"
    md_path = write_comparison([t8_runs[1], moe, t8_runs[0]], out)
    assert md_path == out / "report.md"
    md = md_path.read_text()
    header = _md_row(md, "run")
    assert header == ["run", "method", "order", "instructions", "volume", "adapter", "seed", "seeds",
                      "MAA", "BWT", "ACC"]
    table = md.split("| run |")[1].split("\n\n")[0].splitlines()[2:]
    assert len(table) == 2  # two seeds of lora share one row
    first = [c.strip() for c in table[0].strip("|").split("|")]
    second = [c.strip() for c in table[1].strip("|").split("|")]
    # Sorted by MAA, best first: moelora 68.33 (with its CI), then lora 58.25 / 60.25 averaged.
    adapter = RunConfig().to_dict()["adapter"]
    assert first[:8] == ["moe-s0", "moelora", "paper", "original", "1.0",
                         describe({**adapter, "type": "moelora", "r": 128, "experts": 4}), "0", "1"]
    assert first[8] == "68.33 [66.10, 70.20]"
    _, std = mean_std([58.25, 60.25])
    # the paper's default order is called "paper" (the paper itself calls it random), and the page says so
    assert second[:8] == ["lora-s0, lora-s1", "lora", "paper", "original", "1.0", describe({**adapter, "r": 128}),
                          "0, 1", "2"]
    assert "the paper calls it its random order" in md and "random" not in md.replace("random order", "")
    assert second[8] == f"59.25 ± {std:.2f} (n=2)"
    assert second[9] == "-17.50 ± 0.00 (n=2)"
    assert second[10] == f"57.50 ± {std:.2f} (n=2)"

    page = (out / "report.html").read_text()
    _check_self_contained(page)
    assert '<table id="comparison">' in page
    assert page.count('<img id="heatmap-') == 3
    for png in sorted((out / "heatmaps").glob("*.png")) + [out / "comparison.png"]:
        _check_png(png, min_h=150)
    assert len(list((out / "heatmaps").glob("*.png"))) == 3


def test_summary_table(t3_run: Path) -> None:
    mj = json.loads((t3_run / "matrix.json").read_text())
    text = summary_table(mj)
    lines = text.splitlines()
    assert lines[0] == "run_name=moe-s0 method=moelora seed=0"
    assert lines[1].split() == ["SQA", "TVQA", "INet"]
    assert lines[2].split() == ["zero-shot", "5.0", "10.0", "0.0"]
    assert lines[3].split() == ["1", "SQA", "80.0", "–", "–"]
    assert "MAA    68.33  95% CI (test-set bootstrap of one run) [66.10, 70.20]" in text
    assert "BWT   -20.00" in text
    assert "zero-shot mean 5.00" in text


def test_missing_and_malformed_matrix_json(tmp_path: Path, t3_run: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(empty / "matrix.json"))):
        write_report(empty)
    (t3_run / "matrix.json").write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(str(t3_run / "matrix.json"))):
        write_report(t3_run)
    (t3_run / "matrix.json").write_text(json.dumps({"tasks": T3_TASKS, "matrix": [[1.0, 2.0], [3.0]]}))
    with pytest.raises(ValueError, match=r"matrix\.json: malformed: matrix must be a list of 3 rows"):
        write_report(t3_run)
    (t3_run / "matrix.json").write_text(json.dumps({"tasks": T3_TASKS, "matrix": [[1, "x", None]] * 3}))
    with pytest.raises(ValueError, match=r"matrix\[0\] must be a list of 3 numbers or nulls"):
        write_report(t3_run)
    with pytest.raises(ValueError, match="at least one run"):
        write_comparison([], tmp_path / "cmp")


def test_comparison_names_an_order_given_by_name(tmp_path: Path) -> None:
    runs = [_write_run(tmp_path / f"r{s}", T3_TASKS, T3_MATRIX, seed=s, method="lora",
                       config_extra={"tasks": {"order": "alphabet"}}, with_metrics=True) for s in (0, 1)]
    md = write_comparison(runs, tmp_path / "cmp").read_text()
    assert "| alphabet |" in md and "a>l>p" not in md
    assert "the paper calls it" not in md  # the note on "paper" only where a row shows it


def test_comparison_names_a_listed_order_equal_to_a_named_one(tmp_path: Path) -> None:
    """A task list equal to a named order (``coin.tasks.orders.ORDERS``) shows by that name."""
    from coin.tasks.orders import ORDERS

    alphabet = list(ORDERS["alphabet"])
    runs = [_write_run(tmp_path / "r0", alphabet, _t8_matrix(0.0), seed=0, method="lora", config_extra={},
                       with_metrics=True),
            _write_run(tmp_path / "r1", T3_TASKS, T3_MATRIX, seed=0, method="lora", config_extra={},
                       with_metrics=True)]
    assert _md_row(write_comparison(runs[:1], tmp_path / "cmp0").read_text(), "r0")[2] == "alphabet"
    assert _md_row(write_comparison(runs[1:], tmp_path / "cmp1").read_text(), "r1")[2] == "SQA>TVQA>INet"


def test_the_adapter_column_comes_from_the_adapter_entry(tmp_path: Path, monkeypatch) -> None:
    """A plugin adapter's own keys show in reports without the report knowing it; an adapter this
    install does not know shows its type and rank."""
    import dataclasses

    @dataclasses.dataclass
    class BlockyOptions:
        blocks: int = 2  # a key only this adapter has

    class Blocky(Adapter):
        """A test adapter with a key of its own."""

        Options = BlockyOptions

    monkeypatch.setitem(ADAPTERS._items, "blocky", Blocky)
    monkeypatch.setitem(ADAPTERS._options, "blocky", None)
    plugin = _write_run(tmp_path / "plugin", T3_TASKS, T3_MATRIX, seed=0, method="lora", with_metrics=True,
                        config_extra={"adapter": {"type": "blocky", "r": 8, "blocks": 3}})
    unknown = _write_run(tmp_path / "unknown", T3_TASKS, T3_MATRIX, seed=0, method="lora", with_metrics=True,
                         config_extra={"adapter": {"type": "not-loaded", "r": 16, "experts": 2}})
    cell = _md_row(write_report(plugin).read_text(), "adapter")[1]
    assert cell.startswith("blocky r=8") and "blocks=3" in cell
    assert _md_row(write_report(unknown).read_text(), "adapter")[1] == "not-loaded r=16"
    md = write_comparison([plugin, unknown], tmp_path / "cmp", allow=["adapter.r"]).read_text()
    assert _md_row(md, "plugin")[5] == cell and _md_row(md, "unknown")[5] == "not-loaded r=16"


def test_comparison_tells_seeds_of_one_named_config_apart(tmp_path: Path) -> None:
    """A sweep's seeds share the config's ``name``; the table and heatmaps use their folders then."""
    runs = [_write_run(tmp_path / f"synth-replay-s{s}", T3_TASKS, T3_MATRIX, seed=s, method="replay",
                       config_extra={}, with_metrics=True, run_name="synth-replay") for s in (0, 1)]
    md = write_comparison(runs, tmp_path / "cmp").read_text()
    assert "| synth-replay-s0, synth-replay-s1 |" in md
    assert "### synth-replay-s0" in md and "### synth-replay-s1" in md


def test_comparison_says_how_many_seeds_each_mean_used(tmp_path: Path, t8_runs: list[Path]) -> None:
    third = _write_run(tmp_path / "lora-s2", RANDOM_ORDER, _t8_matrix(4.0), seed=2, method="lora",
                       config_extra={}, with_metrics=True, zero_shot=[1.0] * 8)
    mj = json.loads((third / "matrix.json").read_text())
    mj["metrics"]["bwt"] = None  # this seed's BWT is undefined
    (third / "matrix.json").write_text(json.dumps(mj))
    md = write_comparison([*t8_runs, third], tmp_path / "cmp").read_text()
    row = _md_row(md, "lora-s0, lora-s1, lora-s2")
    assert row[8].endswith("(n=3)") and row[9] == "-17.50 ± 0.00 (n=2 of 3)"
    assert "test-set bootstrap of that one run" in md


def _write_step_logs(run_dir: Path, tasks: list[str], steps: int = 30) -> None:
    """Step logs as a run writes them (coin.tracking.StepLog), a falling loss per stage."""
    from coin.tracking import StepLog

    for j, task in enumerate(tasks):
        log = StepLog(run_dir / "stages" / f"{j + 1:02d}-{task}" / "train_log.jsonl")
        for k in range(1, steps + 1):
            log.append({"step": k, "of": steps, "global_step": j * steps + k, "loss": 3.0 / k + 0.1 * (k % 3)})


def test_report_shows_the_training_loss_when_the_run_logged_it(t3_run: Path, t8_runs: list[Path]) -> None:
    write_report(t8_runs[0])  # no step logs: no loss figure
    assert not (t8_runs[0] / "loss.png").exists() and 'id="loss"' not in (t8_runs[0] / "report.html").read_text()
    _write_step_logs(t3_run, T3_TASKS)
    md = write_report(t3_run).read_text()
    w, _ = _check_png(t3_run / "loss.png")
    assert "![training loss per stage](loss.png)" in md
    assert md.index("(heatmap.png)") < md.index("(loss.png)") < md.index("(forgetting.png)")  # beside the heatmap
    page = (t3_run / "report.html").read_text()
    img = re.search(r'<img id="loss" alt="[^"]*" src="data:image/png;base64,([^"]+)"', page)
    assert img and base64.b64decode(img.group(1)) == (t3_run / "loss.png").read_bytes()


def test_comparison_overlays_the_runs_loss_curves(tmp_path: Path, t8_runs: list[Path]) -> None:
    for run in t8_runs:
        _write_step_logs(run, RANDOM_ORDER, steps=5)
    write_comparison(t8_runs, tmp_path / "cmp")
    _check_png(tmp_path / "cmp" / "loss.png", min_h=150)
    assert '<img id="loss"' in (tmp_path / "cmp" / "report.html").read_text()


def test_comparison_plots_one_curve_per_configuration_the_mean_over_its_seeds(tmp_path: Path) -> None:
    from coin.tracking import StepLog
    from coin.report.compare import config_curves

    runs = []
    for name, seed, scale in (("lora", 0, 1.0), ("lora", 1, 3.0), ("olora", 0, 100.0)):
        d = tmp_path / f"{name}-s{seed}"
        log = StepLog(d / "stages" / "01-GQA" / "train_log.jsonl")
        for k in range(1, 4):
            log.append({"step": k, "of": 3, "global_step": k, "loss": scale * k})
        runs.append({"run": d.name, "dir": d})
    curves = config_curves([runs[:2], runs[2:]])
    assert list(curves) == ["lora", "olora"]
    assert curves["lora"][0]["loss"] == [2.0, 4.0, 6.0] and curves["lora"][0]["steps"] == [1, 2, 3]
    assert curves["olora"][0]["loss"] == [100.0, 200.0, 300.0]


def test_smoothing_is_a_debiased_moving_average() -> None:
    from coin.report.plots import smooth

    assert smooth([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]  # too short to smooth
    assert smooth([4.0, 4.0, 4.0], weight=0.9) == pytest.approx([4.0, 4.0, 4.0])  # no pull towards 0
    s = smooth([0.0, 10.0] * 50)
    assert max(s[50:]) - min(s[50:]) < 5  # the zigzag flattened


def test_the_key_result_comes_first_and_lost_points_follow_one_taxonomy(t3_run: Path) -> None:
    """The three numbers and the heatmap open the report; the lost points are split by the knowledge tags
    alone (a ScienceQA that answers another task's "no" is task confusion there, not a format error)."""
    mj = json.loads((t3_run / "matrix.json").read_text())
    mj["format_share"] = [[1.0, None, None], [1.0, 0.1, None], [1.0, 0.8, None]]  # the scorers: all "format"
    mj["knowledge_tags"] = {"ScienceQA": {"correct": 50, "format": 0, "confusion": 50, "content": 0, "other": 0},
                            "TextVQA": {"correct": 40, "format": 30, "confusion": 0, "content": 30, "other": 0},
                            "ImageNet": {"correct": 90, "format": 0, "confusion": 0, "content": 10, "other": 0}}
    (t3_run / "matrix.json").write_text(json.dumps(mj))
    md = write_report(t3_run).read_text()
    head = md.split("| field | value |")[0]
    assert "**MAA 68.33 · BWT -20.00 · ACC 60.00**" in head and "![accuracy matrix heatmap](heatmap.png)" in head
    assert md.count("![accuracy matrix heatmap]") == 1
    assert "## Format vs knowledge errors" not in md  # one taxonomy: the tags'
    assert _md_row(md, "ScienceQA")[:2] == ["ScienceQA", "80.00"]  # the forgetting table comes first
    kinds = md.split("## Where the lost points went")[1]
    assert "| ScienceQA | 50.00 | 50.00 | 0.00 | 50.00 | 0.00 | 0.00 |" in kinds
    assert "| TextVQA | 40.00 | 60.00 | 30.00 | 0.00 | 30.00 | 0.00 |" in kinds


def test_a_few_wrong_answers_per_task_show_with_their_images(t3_run: Path, tmp_path: Path) -> None:
    from PIL import Image as PILImage

    from coin.engine.matrix import wrong_examples
    from coin.scoring.item import TestItem

    picture = tmp_path / "q1.png"
    PILImage.new("RGB", (640, 480), (200, 30, 30)).save(picture)
    stage = tmp_path / "stage"
    (stage / "predictions").mkdir(parents=True)
    rows = [{"question_id": f"q{k}", "output": out, "score": sc, "scores": {"paper": sc}, "tags": {"knowledge": tag}}
            for k, (out, sc, tag) in enumerate([("B", 1.0, "correct"), ("no", 0.0, "confusion"), ("C", 0.0, "content"),
                                                ("A", 0.0, "content"), ("D", 0.0, "content")])]
    (stage / "predictions" / "ScienceQA.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = [TestItem(question_id=f"q{k}", task="ScienceQA", text=f"Question {k}?",
                      image_path=str(picture) if k == 1 else None, answer="B") for k in range(5)]
    bench = type("Bench", (), {"test": {"ScienceQA": items}})()
    found = wrong_examples([(stage, {"ScienceQA": {}})], ["ScienceQA"], bench)["ScienceQA"]
    assert [e["question_id"] for e in found] == ["q1", "q2", "q3"]  # the first three scored 0, in test order
    assert found[0] == {"question_id": "q1", "question": "Question 1?", "output": "no", "reference": "B",
                        "tag": "confusion", "image": str(picture)}

    mj = json.loads((t3_run / "matrix.json").read_text())
    mj["wrong_examples"] = {"ScienceQA": found}
    (t3_run / "matrix.json").write_text(json.dumps(mj))
    md = write_report(t3_run).read_text()
    section = md.split("## Wrong answers after the last stage")[1]
    assert "Question 1? → answered 'no', expected 'B' (confusion)" in section
    assert "![ScienceQA example 1](examples/ScienceQA-1.png)" in section
    assert max(PILImage.open(t3_run / "examples" / "ScienceQA-1.png").size) == 160  # a thumbnail, not the photo
    assert 'id="example-ScienceQA-1"' in (t3_run / "report.html").read_text()
