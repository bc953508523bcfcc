"""``coin export``: a sweep's small files kept, each configuration only once all its seeds are finished."""

from __future__ import annotations

import json

import pytest
import yaml

from coin.cli import main
from coin.errors import OptionsError
from coin.engine.export import export


def _run(folder, tasks=("A", "B"), done=2, matrix=True, routing=False):
    """A run folder as coin run leaves it: config.yaml, ``done`` stages DONE, matrix.json when ``matrix``,
    and the heavy parts (an adapter, predictions) that export must leave behind."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"name": folder.name, "tasks": {"order": list(tasks)}}))
    (folder / "env.json").write_text("{}")
    for j, task in enumerate(tasks[:done]):
        stage = folder / "stages" / f"{j + 1:02d}-{task}"
        (stage / "adapter").mkdir(parents=True)
        (stage / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
        (stage / "DONE").write_text("")
        if routing:
            (stage / "routing.json").write_text(json.dumps({task: {task: 1.0}}))
    if matrix:
        (folder / "matrix.json").write_text(json.dumps({"tasks": list(tasks), "matrix": [[1.0, None], [1.0, 1.0]]}))
    (folder / "report").mkdir()
    (folder / "report" / "matrix.json").write_text("{}")  # inside a run: not a run of its own


def test_export_keeps_only_configurations_whose_seeds_all_finished(tmp_path, capsys):
    runs = tmp_path / "runs" / "studies"
    for seed in (0, 1, 2):
        _run(runs / "rank" / f"r8-s{seed}", routing=True)
        _run(runs / "order" / f"paper-s{seed}")
    _run(runs / "rank" / "r64-s0")
    _run(runs / "rank" / "r64-s1", done=1, matrix=False)  # cut off in its second stage
    _run(runs / "order" / "alphabet-s0")  # its seeds 1 and 2 never started
    _run(runs / "order" / "shuffle-s0")
    _run(runs / "order" / "shuffle-s1")
    (runs / "order" / "shuffle-s1" / "stages" / "01-A" / "scores.json").write_text("{not json")  # damaged
    _run(runs / "order" / "shuffle-s2")
    (runs / "rank" / "report").mkdir()  # the sweep's comparison report
    (runs / "rank" / "report" / "matrix.json").write_text("{}")
    out = tmp_path / "results" / "studies"
    done = export(runs, out)
    assert done.copied == {"order/paper": [0, 1, 2], "rank/r8": [0, 1, 2]}
    assert done.left_out == {"order/alphabet": "no run folder for seeds 1, 2",
                             "rank/r64": "no run folder for seed 2; seed 1 not finished",
                             "order/shuffle": "seed 1 unreadable (JSONDecodeError: Expecting property name enclosed "
                                              "in double quotes: line 1 column 2 (char 1))"}
    kept = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert kept == sorted([f"order/paper-s{s}/{n}" for s in (0, 1, 2) for n in ("config.yaml", "env.json", "matrix.json")]
                          + [f"rank/r8-s{s}/{n}" for s in (0, 1, 2) for n in
                             ("config.yaml", "env.json", "matrix.json", "stages/01-A/routing.json",
                              "stages/02-B/routing.json")])
    assert (out / "rank/r8-s1/matrix.json").read_bytes() == (runs / "rank/r8-s1/matrix.json").read_bytes()
    # --seeds: the configurations must have these seeds; one of the command line
    assert main(["export", str(runs / "rank"), "--out", str(tmp_path / "two"), "--seeds", "0"]) == 0
    text = capsys.readouterr().out
    assert "copied 2 configurations (2 runs, 8 files)" in text and "left out" not in text
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["r64-s0", "r8-s0"]


def test_export_refuses_what_it_cannot_do(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no run folders"):
        export(tmp_path, tmp_path.parent / "elsewhere")
    _run(tmp_path / "sweep" / "lora-s0")
    with pytest.raises(OptionsError, match="lies inside"):
        export(tmp_path / "sweep", tmp_path / "sweep" / "kept")
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a folder" in capsys.readouterr().err
