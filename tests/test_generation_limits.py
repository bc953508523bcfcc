"""Generation limits: the paper recipes use the original code's, CoIN-Synth keeps sized ones, the card says which."""

from __future__ import annotations

from pathlib import Path

from coin.config_load import from_dict, load_config
from coin.engine.limits import SET, SIZED, limit_card, limit_line

REPO = Path(__file__).resolve().parent.parent
LLAVA = {"ScienceQA": 1024, "TextVQA": 128, "ImageNet": 1024, "GQA": 128, "VizWiz": 128, "Grounding": 1024,
         "VQAv2": 1024, "OCR-VQA": 128}


def test_the_paper_configs_use_the_original_limits():
    """LLaVA's evaluation: 128 new tokens (TextVQA, GQA, VizWiz, OCR-VQA) or 1024; Qwen-VL 30; MiniGPT-v2 100."""
    want = {"llava-1.5-7b": LLAVA, "llava-1.5-13b": LLAVA, "qwen-vl-chat": dict.fromkeys(LLAVA, 30),
            "minigpt-v2": dict.fromkeys(LLAVA, 100)}
    for backbone, limits in want.items():
        files = sorted((REPO / "configs" / "coin" / backbone).glob("*.yaml"))
        assert files
        for path in files:
            assert load_config(path).eval.max_new_tokens == limits, path
    # beyond the paper: no original limits, so coin's sized ones
    for path in sorted((REPO / "configs" / "coin" / "qwen2-vl-7b").glob("*.yaml")):
        assert load_config(path).eval.max_new_tokens == {}, path


def test_coin_synth_keeps_sized_limits():
    assert from_dict({}).eval.max_new_tokens == {}


def test_the_dry_run_says_which_rule_sets_each_limit(tmp_path, capsys, monkeypatch):
    from coin.cli import main

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    main(["run", "--dry-run", "--out", str(tmp_path / "r"), "--set", "tasks.order=[ScienceQA, GQA, VQAv2]",
          "--set", "eval.max_new_tokens={ScienceQA: 1024}"])
    out = capsys.readouterr().out
    assert ("new tokens per answer (rows stop at end-of-sequence): eval.max_new_tokens: ScienceQA 1024; "
            "sized from the training answers (coin's default): GQA, VQAv2") in out
    assert limit_line(["GQA"], {}) == ("new tokens per answer (rows stop at end-of-sequence): sized from the "
                                       "training answers (coin's default): GQA")


def test_the_card_records_each_task_s_limit_and_rule():
    used = {"ScienceQA": {"max_new_tokens": 1024, "at_limit": 0}, "GQA": {"max_new_tokens": 9, "at_limit": 2}}
    card = limit_card(["ScienceQA", "GQA"], {"ScienceQA": 1024}, used)
    assert card == {"ScienceQA": {"max_new_tokens": 1024, "at_limit": 0, "rule": SET},
                    "GQA": {"max_new_tokens": 9, "at_limit": 2, "rule": SIZED}}


def test_the_report_shows_the_generation_card():
    from coin.report.document import Table
    from coin.report.run_report import _card_blocks
    from coin.tasks.protocol_sets import protocol_card

    mj = {"protocol_card": protocol_card(["GQA"]),
          "generation_card": {"GQA": {"max_new_tokens": 128, "at_limit": 3, "rule": SET}}}
    tables = [b for b in _card_blocks(mj) if isinstance(b, Table)]
    limits = [t for t in tables if t.id == "generation-card"]
    assert len(limits) == 1 and limits[0].rows == [["GQA", "128", SET, "3"]]
    older = _card_blocks({"protocol_card": mj["protocol_card"]})  # a matrix.json written before the card
    assert [b.id for b in older if isinstance(b, Table)] == ["protocol-card"]
