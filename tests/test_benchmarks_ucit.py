"""UCIT on fixtures in its released layout: load, check, its quirks, its scoring rules, a two-task run."""

from __future__ import annotations

import json

import pytest
from benchmark_fixtures import write_ucit

from coin.cli import main
from coin.config import DataConfig
from coin.config_load import from_dict
from coin.benchmarks.load import load_benchmark
from coin.benchmarks.check import check_data
from coin.data.coin_json import DataError
from coin.benchmarks.ucit import captions
from coin.tasks.protocol_sets import score_protocols


@pytest.fixture
def ucit(tmp_path):
    return write_ucit(tmp_path / "UCIT")


def _cfg(root, **kw) -> DataConfig:
    return DataConfig(benchmark="ucit", root=str(root), **kw)


def _edit(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_the_released_layout_loads_with_every_folder_spelling(ucit):
    bench = load_benchmark(_cfg(ucit), ["CLEVR-Math", "Flickr30k", "VizWiz-Caption"], seed=0)
    assert bench.image_root == ucit / "datasets"  # UCIT's images live under datasets/
    assert len(bench.train["CLEVR-Math"]) == 8 and len(bench.test["CLEVR-Math"]) == 4  # read from CLEVR/
    sample = bench.train["CLEVR-Math"][0]
    assert sample.image == str(ucit / "datasets" / "CLEVR" / "train_0.png") and sample.answer == "0"
    cap = bench.test["Flickr30k"][2]  # record k takes the captions of image id k + 1
    assert cap.extra["references"] == ["a yellow picture", "a square that is yellow"] and cap.answer == "a yellow picture"
    assert bench.test["VizWiz-Caption"][0].extra["references"][0] == "a plain green square"


def test_check_names_a_missing_image_a_malformed_record_and_a_path_escape(ucit):
    (ucit / "datasets" / "ArxivQA" / "test_1.png").unlink()
    _edit(ucit / "instructions" / "IconQA" / "train.json", lambda rows: rows[2].pop("conversations"))
    _edit(ucit / "instructions" / "ImageNet-R" / "test_3000.json",
          lambda rows: rows[0].update(image="../../../etc/passwd"))
    m = check_data(_cfg(ucit), ["ImageNet-R", "ArxivQA", "IconQA"])
    assert not m.ok
    inet, arxiv, icon = m.tasks
    assert arxiv.missing_images == ["ArxivQA test arxivqa-q1: ArxivQA/test_1.png"]
    assert icon.malformed == [
        f"{ucit}/instructions/IconQA/train.json record 2 (id iconqa-t2): missing key 'conversations'"]
    assert "escapes the image root" in inet.malformed[0] and "imagenet-r-q0" in inet.malformed[0]
    with pytest.raises(DataError, match="escapes the image root"):
        load_benchmark(_cfg(ucit), ["ImageNet-R"], seed=0, check=False)


def test_a_reference_file_whose_ids_do_not_match_is_named_and_the_record_keeps_its_answer(ucit, capsys):
    refs = ucit / "instructions" / "VizWiz-caption" / "val_coco_type_3000.json"
    _edit(refs, lambda d: d.update(annotations=[a for a in d["annotations"] if a["image_id"] != 4]
                                   + [{"image_id": 9, "id": 99, "caption": "stray"}]))
    m = check_data(_cfg(ucit), ["VizWiz-Caption"])
    assert m.ok, m.format()  # a note, not a problem: the run goes on
    (task,) = m.tasks
    assert any("has captions for 4 image ids, the test file 4 records: 1 record(s) without references" in n
               and "image id 4 (question_id vizwiz-caption-q3)" in n for n in task.answer_notes)
    assert any("1 image id(s) match no test record" in n and "e.g. 9" in n for n in task.answer_notes)
    assert "answer note" in m.format()
    last = load_benchmark(_cfg(ucit), ["VizWiz-Caption"], seed=0).test["VizWiz-Caption"][3]
    assert "references" not in last.extra and captions.references_of(last) == [last.answer]
    assert main(["data", "check", "--set", "data.benchmark=ucit", "--root", str(ucit), "--tasks", "VizWiz-Caption",
                 "--quick"]) == 0
    assert "without references" in capsys.readouterr().out


def test_an_unreadable_reference_file_is_a_problem_naming_it(ucit):
    refs = ucit / "instructions" / "Flickr30k-cap" / "val_coco_type_3000.json"
    refs.write_text(json.dumps([{"image_id": 1, "caption": "a list, not COCO"}]))
    m = check_data(_cfg(ucit), ["Flickr30k"])
    assert not m.ok and "expected a COCO annotation file" in m.tasks[0].answer_problems[0]
    assert str(refs) in m.tasks[0].answer_problems[0]


def test_coin_data_stats_and_check_on_the_tree(ucit, capsys):
    assert main(["data", "stats", "--set", "data.benchmark=ucit", "--set", f"data.root={ucit}"]) == 0
    out = capsys.readouterr().out
    assert "Flickr30k  test" in out and "ArxivQA    train" in out
    assert main(["data", "check", "--set", "data.benchmark=ucit", "--set", f"data.root={ucit}"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("OK")


def test_upper_cased_exact_match_and_coin_strict_rules():
    rec = {"question_id": "q", "answer": "Goldfish", "text": "What is it?"}
    res = score_protocols("ImageNet-R", {"q": "  goldfish "}, [rec])
    assert res["paper"].score == 100.0 and res["paper"].samples[0]["parsed"] == "GOLDFISH"
    res = score_protocols("ImageNet-R", {"q": "a goldfish."}, [rec])
    assert res["paper"].score == 0.0 and res["paper"].tags["wrong_format"] == 1 and res["strict"].score == 100.0
    arxiv = {"question_id": "a", "answer": "B", "text": "Which?\nA. red\nB. green\nAnswer with the option's letter."}
    res = score_protocols("ArxivQA", {"a": "The answer is B."}, [arxiv])
    assert res["paper"].score == 0.0 and res["strict"].score == 100.0  # UCIT: exact; coin: the letter read
    res = score_protocols("CLEVR-Math", {"c1": "3", "c2": "three"}, [{"question_id": "c1", "answer": "3"},
                                                                      {"question_id": "c2", "answer": "3"}])
    assert res["paper"].score == 50.0 and res["strict"].score == 100.0


@pytest.mark.slow  # starts Java three times (PTB tokenizer twice, METEOR): about 10 s
def test_caption_metrics_on_reference_cases():
    """Two captions scored as a corpus, every value worked out by hand (PTB tokenisation lower-cases, drops '.').

    BLEU-n pools clipped n-gram matches over the corpus: 5/6 unigrams, 3/4 bigrams, 1/2 trigrams, equal
    lengths (no brevity penalty). ROUGE-L: LCS "a red" gives P = R = 2/3, F = 2/3, and 1 for the identical
    caption; mean 5/6. CIDEr-D: per n the tf-idf cosine, idf log(2/1) for every n-gram here: the first
    caption 2/3, 1/2, 0, 0 -> 10 x 7/24; the identical one 1, 1, 1 and 0 (no 4-gram) -> 7.5; mean 125/24.
    """
    corpus, each = captions.caption_metrics(["a red square", "Two dogs run."], [["a red circle"], ["two dogs run"]])
    assert corpus["Bleu_1"] == pytest.approx(5 / 6, abs=1e-8)
    assert corpus["Bleu_2"] == pytest.approx((5 / 6 * 3 / 4) ** 0.5, abs=1e-8)
    assert corpus["Bleu_3"] == pytest.approx((5 / 6 * 3 / 4 * 1 / 2) ** (1 / 3), abs=1e-8)
    assert each["Bleu_1"] == pytest.approx([2 / 3, 1.0], abs=1e-8)
    assert corpus["ROUGE_L"] == pytest.approx(5 / 6) and each["ROUGE_L"] == pytest.approx([2 / 3, 1.0])
    assert each["CIDEr"] == pytest.approx([10 * 7 / 24, 7.5]) and corpus["CIDEr"] == pytest.approx(125 / 24)
    assert each["METEOR"][1] == pytest.approx(1.0) and 0 < each["METEOR"][0] < 1
    recs = [{"question_id": "c1", "answer": "a red circle"}, {"question_id": "c2", "answer": "x",
                                                               "references": ["two dogs run"]}]
    res = score_protocols("Flickr30k", {"c1": "a red square", "c2": "Two dogs run."}, recs)
    assert res["paper"].score == pytest.approx(100 * sum(corpus[m] for m in captions.METRICS) / 7)
    assert res["paper"].tags["correct"] == 2 and res["strict"] is res["paper"]
    assert res["paper"].samples[1]["score"] == pytest.approx(sum(each[m][1] for m in captions.METRICS) / 7)


def test_caption_metrics_without_java_name_the_debian_package(monkeypatch):
    monkeypatch.setattr(captions.shutil, "which", lambda name: None)
    monkeypatch.setattr(captions, "_MEMO", {})
    with pytest.raises(captions.CaptionMetricsError, match="default-jre-headless"):
        captions.caption_metrics(["a cat"], [["a cat"]])


@pytest.mark.slow
def test_a_two_task_ucit_run_end_to_end(ucit, tmp_path, micro_config):
    from coin.api import run

    micro_config["data"] = {"benchmark": "ucit", "root": str(ucit)}
    micro_config["tasks"] = {"order": ["ImageNet-R", "ArxivQA"]}
    result = run(from_dict(micro_config), tmp_path / "run", progress=False, log=lambda *a: None)
    assert result["tasks"] == ["ImageNet-R", "ArxivQA"]
    A = result["matrix"]
    assert A[0][0] is not None and A[1][0] is not None and A[1][1] is not None and A[0][1] is None
    assert result["protocol_card"]["ArxivQA"]["paper"]["normalizer"] == "upper"
    pred = tmp_path / "run" / "stages" / "02-ArxivQA" / "predictions" / "ArxivQA.jsonl"
    rows = [json.loads(x) for x in pred.open()]
    assert len(rows) == 4 and {r["question_id"] for r in rows} == {f"arxivqa-q{k}" for k in range(4)}
    assert (tmp_path / "run" / "report.md").is_file()
