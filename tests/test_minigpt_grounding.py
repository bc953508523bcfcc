"""MiniGPT-v2's Grounding under the paper protocol is scored as CoIN's MiniGPT script scored it (issue 28.11).

``ETrain/Eval/MiniGPT/eval_grounding.py``: the truth is ``origin_answer_bbox`` (the box on the
image itself: MiniGPT-v2 does not pad), the prediction the first four matches of its number
pattern, IoU above 0.5. A ``minigpt-v2`` run's paper column for Grounding is that protocol; other
backbones keep LLaVA's rule, and ``eval.protocol`` still chooses for any backbone.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from coin.config_load import from_dict
from coin.engine.plan import describe
from coin.tasks.protocol_sets import protocol_card, resolve, score_protocols, with_backbone
from coin.scoring.scorers import score_grounding, score_grounding_minigpt
from coin.models import BACKBONES
from coin.scoring.item import TestItem

# a wide image: answer_bbox is normalised to the padded square, origin_answer_bbox to the image itself
ROW = {"question_id": "g1", "text": "Please provide the bounding box coordinate of the region this sentence "
          "describes: the dog", "answer": "", "answer_bbox": "[0.10, 0.55, 0.30, 0.70]",
          "origin_answer_bbox": "[0.10, 0.60, 0.30, 0.90]", "size": [640, 320]}
RECORD = TestItem.from_row(ROW)


@pytest.mark.parametrize("output, score, tag", [
    ("[0.10, 0.60, 0.30, 0.90]", 1.0, "correct"),  # the origin box
    ("[0.10, 0.55, 0.30, 0.70]", 0.0, "wrong_content"),  # the padded-square box: not MiniGPT-v2's frame
    ("The box is [0.11, 0.61, 0.31, 0.91] and 0.9", 1.0, "correct"),  # the first four numbers
    ("[0.00, 0.60, 0.30, 0.90]", 0.0, "unparsable"),  # 0.00 is no number to the pattern: three are left
    ("[0, 0.1, 0.12, 0.15, 0.40, 0.60]", 0.0, "wrong_content"),  # "0" skipped, 0.1 read as x1
    ("[1, 1, 1, 1]", 0.0, "unparsable"),  # no decimal point, no number
    ("", 0.0, "unparsable"),
])
def test_the_minigpt_scorer_reads_as_the_script_read(output, score, tag):
    s = score_grounding_minigpt(output, RECORD)
    assert (s.score, s.tag) == (score, tag)


def test_the_truth_box_is_the_origin_one_or_a_square_images_answer_bbox():
    assert score_grounding("[0.10, 0.55, 0.30, 0.70]", RECORD).score == 1.0  # LLaVA's rule: the padded square
    square = {k: v for k, v in ROW.items() if k != "origin_answer_bbox"} | {"size": [64, 64]}
    assert score_grounding_minigpt("[0.10, 0.55, 0.30, 0.70]", TestItem.from_row(square)).score == 1.0  # one box
    unsized = {k: v for k, v in square.items() if k != "size"}  # CoIN-Synth's records say nothing else
    assert score_grounding_minigpt("[0.10, 0.55, 0.30, 0.70]", TestItem.from_row(unsized)).score == 1.0
    wide = TestItem.from_row({k: v for k, v in ROW.items() if k != "origin_answer_bbox"})
    with pytest.raises(ValueError, match="g1.*origin_answer_bbox.*not square"):
        score_grounding_minigpt("[0.10, 0.55, 0.30, 0.70]", wide)


def test_minigpt_v2s_paper_column_for_grounding_is_its_own_script():
    own = BACKBONES.get("minigpt-v2").protocols
    cols = resolve("Grounding", with_backbone({}, own))
    assert cols["paper"].name == cols["strict"].name == "minigpt"  # Grounding has no strict rule of its own
    assert resolve("ImageNet", with_backbone({}, own))["paper"].name == "paper"
    assert resolve("Grounding", with_backbone({}, BACKBONES.get("llava").protocols))["paper"].name == "paper"
    assert resolve("Grounding", with_backbone({"Grounding": "paper"}, own))["paper"].name == "paper"  # user's wins
    outputs = {"g1": "[0.10, 0.60, 0.30, 0.90]"}
    scores = score_protocols("Grounding", outputs, [RECORD], with_backbone({}, own))
    assert scores["paper"].score == scores["strict"].score == 100.0
    assert score_protocols("Grounding", outputs, [RECORD])["paper"].score == 0.0  # LLaVA's rule, LLaVA's box
    card = protocol_card(["Grounding"], with_backbone({}, own))["Grounding"]["paper"]
    assert card["protocol"] == "minigpt" and "origin_answer_bbox" in card["rule"] and not card["chosen"]
    assert any("origin_answer_bbox" in d for d in protocol_card(["Grounding"])["Grounding"]["paper"]["deviations"])


def test_the_dry_run_names_the_protocol_per_backbone(micro_config, tmp_path):
    tiny = from_dict(copy.deepcopy(micro_config))
    assert "Grounding  paper paper (IoU with `answer_bbox`" in describe(tiny, tmp_path / "a")[0]
    micro_config["model"] = {"name": "minigpt-v2", "lm_path": str(tmp_path / "llama"),
                             "vit_path": str(tmp_path / "vit.pth"), "checkpoint_path": str(tmp_path / "ck.pth")}
    text = describe(from_dict(micro_config), Path(tmp_path / "b"))[0]
    assert "Grounding  paper minigpt (MiniGPT-v2's script" in text
