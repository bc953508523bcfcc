"""MLLM-CL's domain and ability streams on fixtures in its released layout: load, check, rules, a two-task run.

MathVista's LLM extraction step talks to a scripted OpenAI-compatible server on loopback that
this file starts; nothing leaves the machine.
"""

from __future__ import annotations

import json
import re

import pytest
from benchmark_fixtures import write_mllm_acl, write_mllm_dcl
from helpers_server import LoopbackServer, completion

from coin.benchmarks.mllm_cl.benchmark import FIN_LINE, fin_prompt
from coin.config import DataConfig
from coin.config_load import from_dict
from coin.benchmarks.load import load_benchmark
from coin.benchmarks.check import check_data
from coin.benchmarks.mllm_cl import mathvista
from coin.tasks.protocol_sets import score_protocols
from coin.scoring.scorers import score_sample
from coin.data.sample import TestItem


def _edit(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def dcl(tmp_path):
    return write_mllm_dcl(tmp_path / "MLLM-CL")


@pytest.fixture
def acl(tmp_path):
    return write_mllm_acl(tmp_path / "Ability")


# --------------------------------------------------------------------------------------------- loading


def test_both_streams_load_with_either_image_path_convention(dcl, acl):
    cfg = DataConfig(benchmark="mllm-dcl", root=str(dcl))
    bench = load_benchmark(cfg, ["RS", "Med"], seed=0)
    assert bench.test["RS"][0].image_path == str(dcl / "Domain_data" / "RS" / "images" / "test_0.png")
    assert bench.test["Med"][0].image_path == str(dcl / "Domain_data" / "Med" / "images" / "test_0.png")  # x.png
    assert bench.train["Med"][0].image == str(dcl / "Domain_data" / "Med" / "images" / "train_0.png")
    assert bench.test["RS"][0].question_id == "0"  # an int id in the file
    bench = load_benchmark(DataConfig(benchmark="mllm-acl", root=str(acl)), ["OCR", "Math", "VP", "APP"], seed=0)
    assert bench.test["VP"][0].image_path == str(acl / "CV-Benchv2" / "images" / "0.png")
    assert bench.train["Math"][0].image == str(acl / "Math" / "images" / "0.png")
    assert bench.test["OCR"][0].answer == ["green", "GREEN"] and bench.test["APP"][0].answer is None
    assert check_data(DataConfig(benchmark="mllm-acl", root=str(acl))).ok


def test_check_names_a_missing_image_a_malformed_record_and_a_path_escape(dcl):
    (dcl / "Domain_data" / "AD" / "images" / "test_2.png").unlink()
    _edit(dcl / "Domain_data" / "Sci" / "test.json", lambda rows: rows[1].update(text="  "))
    _edit(dcl / "Domain_data" / "RS" / "train.json", lambda rows: rows[0].update(image="images/../../../../../x.png"))
    m = check_data(DataConfig(benchmark="mllm-dcl", root=str(dcl)))
    rs, med, ad, sci, fin = m.tasks
    assert not m.ok and med.ok and fin.ok
    assert ad.missing_images == ["AD test 2: Domain_data/AD/images/test_2.png"]
    assert sci.malformed == [f"{dcl}/Domain_data/Sci/test.json record 1 (question_id 1): empty 'text'"]
    assert "escapes the image root" in rs.malformed[0]


def test_fin_prompts_lose_the_gold_dependent_format_line_in_training_and_test(dcl):
    assert fin_prompt("How much?\nAnswer with a number.") == f"How much?\n{FIN_LINE}"
    assert fin_prompt("Is it up?\nAnswer yes or no.") == f"Is it up?\n{FIN_LINE}"  # same line whatever the gold
    assert fin_prompt("How much is it?") == f"How much is it?\n{FIN_LINE}"  # no format line: one is appended
    bench = load_benchmark(DataConfig(benchmark="mllm-dcl", root=str(dcl)), ["Fin", "Sci"], seed=0)
    assert bench.test["Fin"][0].text == f"What colour is the chart?\n{FIN_LINE}"
    assert bench.train["Fin"][0].prompt == f"What colour is the chart?\n{FIN_LINE}"
    assert bench.test["Sci"][0].text.endswith("single word or phrase.")  # other domains keep theirs


# --------------------------------------------------------------------------------------------- scoring


def _score(task, output, **record):
    res = score_protocols(task, {"q": output}, [{"question_id": "q", **record}])
    return res["paper"].score, res["paper"].tags


@pytest.mark.parametrize("task,output,record,score", [
    ("RS", "The field is Green.", {"answer": "green"}, 100.0),  # whole word, case-insensitive
    ("RS", "greenish", {"answer": "green"}, 0.0),  # not at a word boundary
    ("AD", "a car turns left", {"answer": "A"}, 100.0),  # eval_ai2d's leniency, kept under paper
    ("RS", "Unanswerable, but green", {"answer": "green"}, 0.0),  # MLLM-CL: "Unanswerable" is wrong
    ("Med", "an MRI scan", {"answer": "MRI"}, 100.0),
    ("Med", "an mri scan", {"answer": "MRI"}, 0.0),  # case-sensitive substring
    ("VP", "I think (b).", {"answer": "(B)"}, 100.0),
    ("Sci", "It shows photosynthesis", {"answer": "Photosynthesis", "image": "SciQA/x.png"}, 100.0),
    ("Sci", "It shows photosynthesis", {"answer": "Photosynthesis", "image": "AI2D/images/x.png"}, 0.0),
    ("Sci", "photosynthesis.", {"answer": "Photosynthesis", "image": "TQA/x.png"}, 100.0),
    ("Sci", "Texas and Ohio", {"answer": "Texas, Ohio, Utah, Iowa", "text": "Which states have the most?"}, 50.0),
    ("Fin", " 1 234.5 ", {"answer": "1234.5"}, 100.0),
    ("Fin", "1,234", {"answer": "1234"}, 0.0),
    ("OCR", "The sign says STOP here", {"answer": ["stop", "halt"]}, 100.0),
    ("OCR", "x ^ { 2 }", {"answer": "x^{2}", "answer_type": "HME100k"}, 100.0),
    ("OCR", "X^{2}", {"answer": "x^{2}", "answer_type": "HME100k"}, 0.0),
])
def test_mllm_cl_rules_on_hand_made_cases(task, output, record, score):
    record.setdefault("text", "Q?")
    assert _score(task, output, **record)[0] == pytest.approx(score)


def test_an_empty_output_is_unparsable_and_a_missing_one_counts():
    res = score_protocols("Med", {"a": " "}, [{"question_id": "a", "answer": "x", "text": "Q"},
                                              {"question_id": "b", "answer": "y", "text": "Q"}])
    assert res["paper"].score == 0.0 and res["paper"].tags["unparsable"] == 1 and res["paper"].tags["missing"] == 1


def test_mathvista_rules_read_options_numbers_and_the_quoted_answer():
    opts = TestItem.from_row({"answer": "B", "text": "Which is larger?\nA. 3\nB. 5"})
    assert mathvista.extract_by_rules("B", opts) == "B" and mathvista.extract_by_rules("5", opts) == "B"
    assert score_sample("mathvista", "(B)", opts).score == 1.0
    assert mathvista.extract_by_rules("I believe it is larger.", opts) is None
    num = TestItem.from_row({"answer": "2.5", "text": "What is x?"})
    assert score_sample("mathvista", "2.50", num).score == 1.0  # rounded to the answer's decimals
    assert score_sample("mathvista", 'The answer is "2.5".', num).score == 1.0
    assert score_sample("mathvista", "x is two and a half", num).tag == "unparsable"  # the LLM's job
    assert score_sample("mathvista", "2.4", num).tag == "wrong_content"


class Extractor(LoopbackServer):
    """A loopback /v1/chat/completions that extracts the last number of the model response it is shown."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

        def respond(body: dict, headers) -> tuple[int, dict]:
            prompt = body["messages"][-1]["content"]
            self.prompts.append(prompt)
            response = prompt.rsplit("Model response: ", 1)[1].split("\nExtracted answer:")[0]
            words = {"two and a half": "2.5", "seven": "7"}
            found = next((v for k, v in words.items() if k in response), "none")
            assert body["temperature"] == 0
            return 200, completion(body["model"], f"Extracted answer: {found}")

        super().__init__(respond)


@pytest.fixture
def extractor():
    pytest.importorskip("openai")
    s = Extractor()
    yield s
    s.close()


def test_mathvista_llm_extraction_runs_on_a_judge_backend_for_what_the_rules_miss(extractor, tmp_path):
    from coin.scoring.judge import judge_config

    cfg = judge_config(backend="openai", model="extractor", base_url=extractor.url, timeout=5, retries=0,
                       concurrency=2)
    records = [{"question_id": "a", "answer": "2.5", "text": "What is x?"},
               {"question_id": "b", "answer": "7", "text": "How many?"},
               {"question_id": "c", "answer": "3", "text": "How many?"}]
    outputs = {"a": "x is two and a half", "b": "7", "c": "I count seven of them"}
    cache = tmp_path / "cache.sqlite"
    result = mathvista.score_with_llm(outputs, records, cfg, cache)
    assert [s["extracted_by"] for s in result.samples] == ["llm", "rules", "llm"]
    assert [s["score"] for s in result.samples] == [1.0, 1.0, 0.0] and result.score == pytest.approx(200 / 3)
    assert len(extractor.prompts) == 2  # in any order: two requests in flight at once
    assert any(re.search(r"Question: How many\?\nModel response: I count seven of them\nExtracted answer:$", p)
               for p in extractor.prompts)
    assert mathvista.score_with_llm(outputs, records, cfg, cache).score == result.score
    assert len(extractor.prompts) == 2  # the second pass read the cache
    # the rules-only protocol of the run scores the same outputs lower: the LLM step is what differs
    assert score_protocols("Math", outputs, records)["paper"].score == pytest.approx(100 / 3)


def test_llm_rescore_of_a_run_folder_writes_rules_and_llm_scores_per_stage(extractor, tmp_path):
    from coin.scoring.judge import judge_config

    cfg = judge_config(backend="openai", model="extractor", base_url=extractor.url, timeout=5, retries=0, name="ex")
    records = [{"question_id": "a", "answer": "7", "text": "How many?"},
               {"question_id": "b", "answer": "7", "text": "Q"}]
    for stage, outputs in (("00-zeroshot", ["none", "nothing"]), ("01-Math", ["7", "seven, I think"])):
        pred = tmp_path / "run" / "stages" / stage / "predictions" / "Math.jsonl"
        pred.parent.mkdir(parents=True)
        rows = score_protocols("Math", dict(zip("ab", outputs)), records)["paper"].samples
        pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = mathvista.llm_rescore_run(tmp_path / "run", "Math", cfg, records)
    assert table["stages"]["01-Math"]["rules"] == 50.0 and table["stages"]["01-Math"]["llm"] == 100.0
    assert table["stages"]["00-zeroshot"]["llm"] == 0.0
    assert json.loads((tmp_path / "run" / "extract" / "ex" / "Math.json").read_text()) == table
    assert (tmp_path / "run" / "extract" / "cache.sqlite").is_file()


def test_answers_reused_from_identical_weights_still_get_their_submission_file(tmp_path):
    from coin.engine.evaluate import evaluate_task

    records = [{"question_id": "app0", "answer": None, "text": "Which?\nA. x\nB. y"}]
    pred = tmp_path / "predictions"
    pred.mkdir()
    (pred / "APP.jsonl").write_text(json.dumps({"question_id": "app0", "output": "B"}) + "\n")  # copied, not generated
    result = evaluate_task(None, "APP", records, 8, 4, pred, progress=False)
    assert result["paper"].score is None and result["paper"].tags == {"unscored": 1}
    sub = json.loads((pred / "APP.submission.json").read_text())
    assert sub == [{"question_id": "app0", "prediction": "B", "option": "B"}]


def test_coin_score_on_an_unscored_task_says_so(tmp_path, capsys):
    from coin.cli import main

    (tmp_path / "gt.json").write_text(json.dumps([{"question_id": 1, "text": "Which?\nA. x\nB. y"}]))
    (tmp_path / "p.jsonl").write_text(json.dumps({"question_id": 1, "text": "A"}) + "\n")
    assert main(["score", "--task", "APP", "--predictions", str(tmp_path / "p.jsonl"),
                 "--ground-truth", str(tmp_path / "gt.json")]) == 0
    assert "score none (no public answers: unscored) over 1 samples" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ a run


@pytest.mark.slow
def test_a_two_task_ability_run_writes_the_submission_and_leaves_app_unscored(acl, tmp_path, micro_config):
    from coin.api import run

    micro_config["data"] = {"benchmark": "mllm-acl", "root": str(acl)}
    micro_config["tasks"] = {"order": ["VP", "APP"]}
    out = tmp_path / "run"
    result = run(from_dict(micro_config), out, progress=False, log=lambda *a: None)
    assert result["tasks"] == ["VP", "APP"]
    assert result["matrix"][1][0] is not None and result["matrix"][1][1] is None and result["zero_shot"][1] is None
    assert result["metrics"]["acc"] is None  # never an average of fewer tasks
    scores = json.loads((out / "stages" / "02-APP" / "scores.json").read_text())
    assert scores["APP"]["score"] is None and scores["APP"]["tags"] == {"unscored": 4}
    sub = json.loads((out / "stages" / "02-APP" / "predictions" / "APP.submission.json").read_text())
    assert [r["question_id"] for r in sub] == [f"app{k}" for k in range(4)]
    assert {"prediction", "option"} <= set(sub[0])
    assert not (out / "stages" / "02-APP" / "predictions" / "VP.submission.json").exists()
    assert (out / "stages" / "00-zeroshot" / "predictions" / "APP.submission.json").is_file()
    assert result["protocol_card"]["APP"]["paper"]["scorer"] == "submission"
    assert (out / "report.md").is_file()


def test_a_two_task_domain_run_scores_both_tasks_by_their_rules(dcl, tmp_path, micro_config):
    """The domain stream end to end on the tiny model: Med (substring rule) then Fin (its fixed prompt line)."""
    from coin.api import run

    micro_config["data"] = {"benchmark": "mllm-dcl", "root": str(dcl)}
    micro_config["tasks"] = {"order": ["Med", "Fin"]}
    out = tmp_path / "run"
    result = run(from_dict(micro_config), out, progress=False, log=lambda *a: None)
    assert result["tasks"] == ["Med", "Fin"]
    assert all(v is not None for v in result["matrix"][1]) and result["metrics"]["acc"] is not None
    from coin.tasks import get_task

    card = result["protocol_card"]
    assert [card[t]["paper"]["scorer"] for t in ("Med", "Fin")] == [get_task(t).scorer for t in ("Med", "Fin")]
    scores = json.loads((out / "stages" / "02-Fin" / "scores.json").read_text())
    n_fin = len(load_benchmark(from_dict(micro_config).data, ["Fin"], 0).test["Fin"])
    assert scores["Fin"]["n"] == n_fin > 0 and isinstance(scores["Fin"]["score"], float)
    assert (out / "report.md").read_text().startswith("# MLLM-CL domain stream report: run")


def test_coin_judge_extract_rescores_a_run_folder_from_its_own_config(extractor, acl, tmp_path, capsys):
    """``coin judge RUN --extract Math``: the run's own test records, the LLM step, a table per stage."""
    import yaml

    from coin.cli import main

    cfg = from_dict({"data": {"benchmark": "mllm-acl", "root": str(acl)}, "tasks": {"order": ["Math"]}})
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    records = load_benchmark(cfg.data, ["Math"], cfg.seed).test["Math"]
    outputs = {r.question_id: f"I think it is {r.answer}" for r in records}  # no rule reads this
    pred = run / "stages" / "01-Math" / "predictions" / "Math.jsonl"
    pred.parent.mkdir(parents=True)
    rows = score_protocols("Math", outputs, records)["paper"].samples
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["judge", str(run), "--extract", "Math", "--backend", "openai", "--model", "extractor",
                 "--base-url", extractor.url, "--timeout", "5", "--retries", "0", "--name", "ex"]) == 0
    out = capsys.readouterr().out
    assert "01-Math" in out and (run / "extract" / "ex" / "Math.json").is_file()
    table = json.loads((run / "extract" / "ex" / "Math.json").read_text())
    assert len(extractor.prompts) == len(records) and table["stages"]["01-Math"]["rules"] == 0.0
    assert main(["judge", str(run), "--extract", "VP", "--backend", "openai", "--model", "x",
                 "--base-url", extractor.url]) == 2  # only a task scored by MathVista's rules
