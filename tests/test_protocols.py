"""Scoring protocols (paper and strict side by side), TextVQA's answer source, the protocol card."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import raw_sources as rs
import yaml

from coin.cli import main
from coin.config import ConfigError, DataConfig, RunConfig
from coin.config_load import from_dict
from coin.data.answers import join_answers, read_answer_file
from coin.benchmarks.load import load_benchmark
from coin.benchmarks.coin.builders import build_source
from coin.benchmarks.check import check_data
from coin.data.coin_json import DataError
from coin.tasks.protocol_sets import format_card, protocol_card, resolve, score_protocols

# ------------------------------------------------------------------ the official file


def _official(path: Path, rows: list[tuple[object, list[str]]]) -> Path:
    """An answer file in TextVQA_0.5.1_val.json's layout (top-level ``data``, int question ids)."""
    data = [{"question": "what is written?", "image_id": f"img{k}", "image_classes": ["Poster"],
             "flickr_original_url": "", "flickr_300k_url": "", "image_width": 1024, "image_height": 768,
             "answers": answers, "question_tokens": ["what", "is", "written"], "question_id": qid,
             "set_name": "val"} for k, (qid, answers) in enumerate(rows)]
    path.write_text(json.dumps({"dataset_type": "val", "dataset_name": "textvqa", "dataset_version": "0.5.1",
                                "data": data}))
    return path


def test_join_lists_ids_without_answers_answers_without_ids_and_duplicates(tmp_path: Path) -> None:
    ten = ["stop"] * 10
    table = read_answer_file(_official(tmp_path / "val.json", [(1, ten), (2, ten), (2, ten), (9, ten), (3, ["a"])]))
    records = [{"question_id": q, "answer": "stop"} for q in ("1", "2", "3", "4")]
    joined, report = join_answers(records, table)
    assert joined[0]["answers"] == ten and "answers" not in joined[3]
    assert report.without_answers == ["4"]
    assert report.without_record == ["9"]
    assert report.duplicates == ["2"]
    assert report.wrong_count == ["3 (1 answers)"]
    problems = report.problems("val.json", "TextVQA")
    assert len(problems) == 3 and not report.ok
    assert "1 test question id(s) have no answers in it: 4" in problems[0]
    assert report.notes("val.json", "TextVQA") == [
        "TextVQA: answer file val.json: 1 question id(s) there have no test record (not used): 9"]


def test_answer_file_in_another_layout_is_refused_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "list.json"
    bad.write_text(json.dumps([{"question_id": 1, "answers": ["a"] * 10}]))
    with pytest.raises(ValueError, match=r"list\.json: expected an object with a 'data' list"):
        read_answer_file(bad)


# ------------------------------------------------------------ the released layout


@pytest.fixture
def released(tmp_path: Path) -> Path:
    """A CoIN root whose TextVQA test file is as released: one ``answer``, no ``answers``."""
    raw = rs.write_textvqa(tmp_path / "textvqa")
    root = tmp_path / "coin"
    build_source("textvqa", raw, root)
    folder = root / "Instructions_Original" / "TextVQA"
    test = json.loads((folder / "test.json").read_text())
    (folder / "test.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "answers"} for r in test]))
    for split in ("train", "test"):
        rs.write_images(root, json.loads((folder / f"{split}.json").read_text()))
    (root / "TextVQA_0.5.1_val.json").write_bytes((raw / "TextVQA_0.5.1_val.json").read_bytes())
    return root


def test_missing_textvqa_answer_source_is_named_before_anything_loads(released: Path, capsys) -> None:
    cfg = DataConfig(benchmark="coin", root=str(released))
    m = check_data(cfg, ["TextVQA"], protocols={})
    assert not m.ok
    (problem,) = m.tasks[0].answer_problems
    assert "Instructions_Original/TextVQA/test.json" in problem
    assert "data.answers.TextVQA" in problem and "eval.protocol.TextVQA: single" in problem
    with pytest.raises(DataError, match="data.answers.TextVQA"):
        load_benchmark(cfg, ["TextVQA"], 0, protocols={})
    assert main(["data", "check", "--root", str(released), "--tasks", "TextVQA"]) == 1
    assert "data.answers.TextVQA" in capsys.readouterr().out
    # choosing another protocol by name, or giving the source, clears it
    assert check_data(cfg, ["TextVQA"], protocols={"TextVQA": "single"}).ok
    with_source = DataConfig(benchmark="coin", root=str(released), answers={"TextVQA": "TextVQA_0.5.1_val.json"})
    assert check_data(with_source, ["TextVQA"], protocols={}).ok


def test_dry_run_names_the_missing_answer_source(released: Path, tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"benchmark": "coin", "root": str(released)},
                                   "tasks": {"order": ["TextVQA"]}}))
    assert main(["run", "--config", str(cfg), "--dry-run", "--out", str(tmp_path / "r")]) == 1
    out = capsys.readouterr().out
    assert "MISSING" in out and "data.answers.TextVQA" in out
    assert main(["run", "--config", str(cfg), "--dry-run", "--out", str(tmp_path / "r"),
                 "--set", "data.answers.TextVQA=TextVQA_0.5.1_val.json"]) == 0
    assert "answers joined from" in capsys.readouterr().out


def test_with_the_source_textvqa_is_soft_scored(released: Path) -> None:
    cfg = DataConfig(benchmark="coin", root=str(released), answers={"TextVQA": "TextVQA_0.5.1_val.json"})
    records = load_benchmark(cfg, ["TextVQA"], 0, protocols={}).test["TextVQA"]
    assert records[0].answers == ["1735"] * 9 + ["1736"]
    qid = records[0].question_id
    scores = score_protocols("TextVQA", {qid: "1736"}, records)  # one annotator of ten said 1736
    assert scores["paper"].score == pytest.approx(30.0)  # soft accuracy, not exact match (0)
    # without the join, a protocol needing ten answers refuses instead of quietly using exact match
    plain = [r.without("answers") for r in records]
    with pytest.raises(ValueError, match="needs ten answers"):
        score_protocols("TextVQA", {qid: "1736"}, plain)
    assert score_protocols("TextVQA", {qid: "1735"}, plain, {"TextVQA": "single"})["paper"].score == 100.0


def test_eval_protocol_is_validated_naming_the_key() -> None:
    with pytest.raises(ConfigError) as e:
        from_dict({"eval": {"protocol": {"TextVQA": "singel", "TextQA": "paper"}}})
    text = str(e.value)
    assert "eval.protocol.TextVQA: unknown protocol 'singel'. Did you mean 'single'?" in text
    assert "eval.protocol: unknown task 'TextQA'" in text
    with pytest.raises(ConfigError, match="data.answers: unknown task 'GQAA'"):
        from_dict({"data": {"answers": {"GQAA": "x.json"}}})


# ------------------------------------------------------------ the task protocols


def _score(task: str, output: str, record: dict, choice: dict | None = None) -> dict[str, float]:
    rec = {"question_id": "q", **record}
    return {c: r.score for c, r in score_protocols(task, {"q": output}, [rec], choice).items()}


def test_textvqa_uses_the_m4c_processor() -> None:
    # m4c deletes the comma ("redwhite"); the VQA rules make it a space ("red white")
    rec = {"answer": "redwhite", "answers": ["redwhite"] * 10}
    assert _score("TextVQA", "red,white", rec) == {"paper": 100.0, "strict": 100.0}
    rec = {"answer": "red white", "answers": ["red white"] * 10}
    assert _score("TextVQA", "red,white", rec)["paper"] == 0.0
    rec = {"answer": "dog's", "answers": ["dog 's"] * 10}  # m4c splits 's off its word
    assert _score("TextVQA", "Dog's", rec)["paper"] == 100.0


def test_imagenet_paper_rule_is_substring_both_ways_and_strict_is_whole_name() -> None:
    rec = {"answer": "golden retriever"}
    assert _score("ImageNet", "golden retriever", rec) == {"paper": 100.0, "strict": 100.0}
    assert _score("ImageNet", "a golden retriever dog", rec) == {"paper": 100.0, "strict": 0.0}
    assert _score("ImageNet", "retriever", rec) == {"paper": 100.0, "strict": 0.0}
    assert _score("ImageNet", "Golden retriever", rec) == {"paper": 0.0, "strict": 100.0}  # case-sensitive, as CoIN
    # the original's bug: "" in "golden retriever" credited an empty answer
    for empty in ("", "  "):
        res = score_protocols("ImageNet", {"q": empty}, [{"question_id": "q", **rec}])
        assert res["paper"].score == 0.0 and res["paper"].tags["unparsable"] == 1


@pytest.mark.parametrize(("task", "output", "answer", "paper", "strict"), [
    ("VQAv2", "Yes", "yes", 100.0, 100.0),
    ("VQAv2", "yes.", "yes", 0.0, 100.0),  # CoIN: case-insensitive equality, no normalisation
    ("VizWiz", "two", "2", 0.0, 100.0),
    ("OCR-VQA", "The Hobbit", "the hobbit", 100.0, 100.0),
    ("OCR-VQA", "Hobbit", "the hobbit", 0.0, 100.0),
    ("GQA", "Left.", "left", 100.0, 100.0),  # CoIN's GQA converter strips trailing periods
    ("GQA", "the left", "left", 0.0, 100.0),
])
def test_short_answer_tasks_paper_vs_strict(task, output, answer, paper, strict) -> None:
    assert _score(task, output, {"answer": answer}) == {"paper": paper, "strict": strict}


def test_a_chosen_protocol_replaces_both_columns_and_the_card_says_so() -> None:
    cols = resolve("TextVQA", {"TextVQA": "single"})
    assert cols["paper"].name == cols["strict"].name == "single"
    card = protocol_card(["TextVQA", "ImageNet"], {"TextVQA": "single"})
    assert card["TextVQA"]["paper"]["chosen"] and card["TextVQA"]["paper"]["protocol"] == "single"
    assert card["ImageNet"]["paper"]["scorer"] == "substring" and card["ImageNet"]["strict"]["scorer"] == "classification"
    assert card["ImageNet"]["paper"]["normalizer"] == "strip"
    assert any("empty prediction" in d for d in card["ImageNet"]["paper"]["deviations"])


def test_score_help_shows_the_options_and_the_card_has_its_own_flag(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    help_text = capsys.readouterr().out
    assert help_text.lstrip().startswith("usage: coin score") and "--predictions" in help_text
    assert "--card" in help_text and format_card().splitlines()[0] not in help_text  # the options, not 300 lines
    assert main(["score", "--card"]) == 0
    out = capsys.readouterr().out
    assert format_card().splitlines()[0] in out
    assert "ImageNet paper: credited when `answer in pred or pred in answer`" in out
    assert "TextVQA paper: VQA soft accuracy over ten answers (m4c" in out


def test_coin_score_protocol_on_files_from_any_tool(tmp_path: Path, capsys) -> None:
    gt = tmp_path / "test.json"
    gt.write_text(json.dumps([{"question_id": 1, "image": "a.jpg", "text": "What is the object?", "answer": "tabby cat"},
                              {"question_id": 2, "image": "b.jpg", "text": "What is the object?", "answer": "goldfish"}]))
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"question_id": 1, "text": "tabby"}\n{"question_id": 2, "text": "goldfish"}\n')
    got = {}
    for protocol in ("paper", "strict"):
        assert main(["score", "--task", "ImageNet", "--protocol", protocol, "--predictions", str(preds),
                     "--ground-truth", str(gt), "--json"]) == 0
        got[protocol] = json.loads(capsys.readouterr().out)["score"]
    assert got == {"paper": 100.0, "strict": 50.0}


# ------------------------------------------------------ matrix.json and the report


def _old_run(tmp_path: Path) -> tuple[Path, list[Path], dict]:
    """A run folder written before protocols: rows and scores.json hold one ``score`` each."""
    out = tmp_path / "run"
    tests = {"ImageNet": [{"question_id": "1", "answer": "tabby cat"}, {"question_id": "2", "answer": "goldfish"}],
             "VQAv2": [{"question_id": "7", "answer": "2", "answers": ["2"] * 7 + ["3"] * 3}]}
    outputs = {"ImageNet": {"1": "tabby", "2": "goldfish"}, "VQAv2": {"7": "3"}}
    old_scores = {"ImageNet": 50.0, "VQAv2": 90.0}
    stages = []
    for j, tasks in enumerate((["ImageNet"], ["ImageNet", "VQAv2"]), 1):
        d = out / "stages" / f"0{j}-{tasks[-1]}"
        (d / "predictions").mkdir(parents=True)
        entry = {}
        for task in tasks:
            rows = [{"task": task, "question_id": q, "output": o, "parsed": o, "score": 0.5, "tag": "correct"}
                    for q, o in outputs[task].items()]
            (d / "predictions" / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            entry[task] = {"score": old_scores[task], "n": len(rows), "tags": {}, "format_share": None}
        (d / "scores.json").write_text(json.dumps(entry))
        (d / "DONE").write_text("")
        stages.append(d)
    return out, stages, tests


def test_old_run_folder_is_rescored_into_both_protocols(tmp_path: Path) -> None:
    from coin.engine.matrix import write_matrix
    from coin.report import write_report

    out, stages, tests = _old_run(tmp_path)
    cfg = RunConfig(name="old")
    cfg.tasks.order = ["ImageNet", "VQAv2"]
    cfg.eval.bootstrap = 50
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    mj = write_matrix(out, cfg, ["ImageNet", "VQAv2"], stages, None, {}, bench=SimpleNamespace(test=tests, protocol={}))
    # paper: ImageNet substring (tabby in tabby cat) = 100; VQAv2 exact against the one answer "2" = 0
    assert mj["matrix"] == [[100.0, None], [100.0, 0.0]]
    # strict: ImageNet whole name = 50; VQAv2 soft accuracy over ten answers ("3" by 3 annotators) = 90
    assert mj["strict"]["matrix"] == [[50.0, None], [50.0, 90.0]]
    assert mj["metrics"]["acc"] == 50.0 and mj["strict"]["metrics"]["acc"] == 70.0
    assert mj["strict"]["ci"]["acc"] is not None and mj["ci_kind"] == "test-set bootstrap of one run"
    assert mj["protocol_card"]["ImageNet"]["paper"]["scorer"] == "substring"
    row = json.loads((stages[1] / "predictions" / "VQAv2.jsonl").read_text())
    assert row["scores"] == {"paper": 0.0, "strict": pytest.approx(0.9)} and row["score"] == 0.0
    scores = json.loads((stages[1] / "scores.json").read_text())
    assert scores["ImageNet"]["protocols"]["strict"]["score"] == 50.0
    assert json.loads((out / "matrix.json").read_text())["strict"]["matrix"] == mj["strict"]["matrix"]
    # the report leads with paper, shows strict in its own table, the card, and labels the intervals
    md = write_report(out).read_text()
    assert md.index("## Accuracy matrix (paper protocol)") < md.index("## Accuracy matrix (strict protocol)")
    assert "## Protocol card" in md and "| ImageNet | paper | paper | substring | strip |" in md
    assert "95% CI (test-set bootstrap of one run)" in md
    html = (out / "report.html").read_text()
    assert 'id="matrix-strict"' in html and 'id="protocol-card"' in html
    # a second assemble changes nothing on disk (a finished run rerun writes no file)
    before = (stages[1] / "scores.json").stat().st_mtime_ns
    write_matrix(out, cfg, ["ImageNet", "VQAv2"], stages, None, {}, bench=SimpleNamespace(test=tests, protocol={}))
    assert (stages[1] / "scores.json").stat().st_mtime_ns == before


def test_a_folder_continues_when_only_its_scoring_changes(tmp_path: Path) -> None:
    from coin.engine.run_folder import RunFolderError, prepare_run_dir

    out = tmp_path / "run"
    prepare_run_dir(out, RunConfig())
    new = from_dict({"data": {"answers": {"TextVQA": "TextVQA_0.5.1_val.json"}},
                     "eval": {"protocol": {"ImageNet": "strict"}}})
    prepare_run_dir(out, new)  # an old folder gains its answer source: rescored, not refused
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["data"]["answers"] == {"TextVQA": "TextVQA_0.5.1_val.json"}
    assert stored["eval"]["protocol"] == {"ImageNet": "strict"}
    with pytest.raises(RunFolderError, match="train.lr"):
        prepare_run_dir(out, from_dict({"train": {"lr": 1e-4}, "data": new.to_dict()["data"],
                                        "eval": new.to_dict()["eval"]}))


def test_every_coin_synth_answer_is_correct_under_both_protocols(tmp_path: Path) -> None:
    from coin.benchmarks.synth.generator import generate
    from coin.tasks import ORDERS, get_task

    root = generate(tmp_path / "synth", seed=3, n_train=2, n_test=12, n_pretrain=0)
    for task in ORDERS["paper"]:
        records = json.loads((root / "Instructions_Original" / get_task(task).folder / "test.json").read_text())
        res = score_protocols(task, {r["question_id"]: str(r["answer"]) for r in records}, records)
        assert res["paper"].score == res["strict"].score == 100.0, task


def test_a_miss_is_tagged_alike_under_both_protocols() -> None:
    rec = {"question_id": "q", "answer": "fish"}
    res = score_protocols("VizWiz", {"q": "a fish."}, [rec])
    assert res["paper"].score == 0.0 and res["paper"].tags["wrong_format"] == 1  # content right, format not
    assert res["strict"].score == 100.0


# ------------------------------------------------------------------ protocols declared in a task's own file


@pytest.fixture
def scratch_tasks():
    """Tasks registered in a test are gone after it."""
    from coin.tasks import TASKS

    with TASKS.scratch():
        yield


def test_a_task_file_declares_its_protocols_and_the_card_reads_them(scratch_tasks) -> None:
    from coin.scoring.protocol import Protocol
    from coin.tasks import TASKS, TaskSpec, get_task
    from coin.tasks.rules import PAPER_LOWER, STRICT_EXACT

    assert get_task("VizWiz").protocols == (PAPER_LOWER, STRICT_EXACT)  # the short-answer rules, declared once
    assert get_task("OCR-VQA").protocols[1] is STRICT_EXACT
    strict = Protocol(name="strict", scorer="exact", normalizer="vqa", answers="one", rule="exact after VQA normalisation",
                      deviations=("ours",))
    TASKS.register(TaskSpec(name="Sketch", folder="Sketch", answer_form="phrase", scorer="exact", instruction="One word.",
                            max_new_tokens=8, protocols=(PAPER_LOWER, strict)))
    assert resolve("Sketch") == {"paper": PAPER_LOWER, "strict": strict}
    assert "Sketch strict: exact after VQA normalisation [scorer exact, normaliser vqa, one answer]" in format_card()
    assert format_card().index("OCR-VQA paper") < format_card().index("Sketch paper")  # the paper's eight lead
    TASKS.register(TaskSpec(name="Doodle", folder="Doodle", answer_form="phrase", scorer="substring",
                            instruction="One word.", max_new_tokens=8))  # none: its scorer is paper
    card = protocol_card(["Doodle"])["Doodle"]
    assert card["paper"]["scorer"] == "substring" and card["strict"] == card["paper"]


def test_a_bad_protocol_declaration_stops_at_registration_naming_each_field(scratch_tasks) -> None:
    from coin.scoring.protocol import Protocol
    from coin.tasks import TASKS, TaskSpec

    bad = (Protocol(name="strict", scorer="exakt", normalizer="vqaa", answers="eleven", rule="?"),
           Protocol(name="strict", scorer="exact", normalizer=None, answers="one", rule="?"))
    with pytest.raises(ValueError) as e:
        TASKS.register(TaskSpec(name="Sketch", folder="Sketch", answer_form="phrase", scorer="exact", instruction="One word.",
                                max_new_tokens=8, protocols=bad))
    for part in ("protocols: the first must be 'paper', got 'strict'", "protocols: a name is declared twice",
                 "protocols.strict.scorer: unknown scorer 'exakt'. Did you mean 'exact'?",
                 "protocols.strict.normalizer: unknown normaliser 'vqaa'",
                 "protocols.strict.answers: unknown answer source 'eleven'; choices: one, ten"):
        assert part in str(e.value)
    assert "Sketch" not in TASKS
