"""Per-task training overrides (``train.per_task``): validated like every key, used for that task's stage."""

from __future__ import annotations

import json

import pytest

from coin.config import ConfigError, TrainConfig
from coin.config_load import from_dict


def _problems(train: dict) -> list[str]:
    with pytest.raises(ConfigError) as e:
        from_dict({"train": train})
    return e.value.problems


def test_overrides_replace_only_their_keys_for_their_task():
    per_task = {"GQA": {"batch_size": 6, "grad_accum": 8}, "VQAv2": {"epochs": 2, "lr": 5e-4}}
    cfg = from_dict({"train": {"batch_size": 16, "grad_accum": 2, "lr": 1e-3, "per_task": per_task}})
    t = cfg.train
    gqa, vqa = t.for_task("GQA"), t.for_task("VQAv2")
    assert (gqa.batch_size, gqa.grad_accum, gqa.epochs, gqa.lr) == (6, 8, 1.0, 1e-3)
    assert (vqa.batch_size, vqa.grad_accum, vqa.epochs, vqa.lr) == (16, 2, 2.0, 5e-4)
    assert t.for_task("TextVQA") is t  # no override: the stage gets the config itself
    # the stored config keeps them, and reads back to the same config
    again = from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict() and again.train.for_task("GQA").batch_size == 6
    # a hand-built config (tests, scripts) may give plain mappings
    assert TrainConfig(per_task={"GQA": {"lr": 1e-5}}).for_task("GQA").lr == 1e-5


def test_every_problem_names_the_full_key():
    assert _problems({"per_task": {"GQA": {"batch_sise": 6}}}) == [
        "unknown key 'train.per_task.GQA.batch_sise' (did you mean 'train.per_task.GQA.batch_size'?); "
        "TaskTrainConfig takes: batch_size, grad_accum, epochs, lr"]
    assert _problems({"per_task": {"GQA": {"batch_size": 0, "grad_accum": -1, "epochs": float("inf"),
                                           "lr": float("nan")}}}) == [
        "train.per_task.GQA.batch_size must be >= 1, got 0",
        "train.per_task.GQA.grad_accum must be >= 1, got -1",
        "train.per_task.GQA.epochs must be a finite number > 0, got inf",
        "train.per_task.GQA.lr must be a finite number > 0, got nan"]
    assert _problems({"per_task": {"GQA": {"batch_size": "six"}}}) == [
        "train.per_task.GQA.batch_size must be int or null, got 'six'"]
    assert _problems({"per_task": {"GQA": 6}}) == ["train.per_task.GQA must be a mapping, got int"]
    problems = _problems({"per_task": {"GQAA": {"batch_size": 6}}})
    assert len(problems) == 1
    assert problems[0].startswith("train.per_task.GQAA: unknown task 'GQAA'. Did you mean 'GQA'?")


def test_the_dry_run_shows_each_task_s_steps_at_its_own_batch(tmp_path, monkeypatch, capsys):
    """CoIN's LLaVA per-task batches: 300 stand-in samples per task, one process: ceil(300 / (b x 8)) steps."""
    from test_minigpt_v2 import dry_run_with_every_file

    cfg, out = dry_run_with_every_file("llava-1.5-7b/lora-scripts-batch.yaml", tmp_path, monkeypatch, capsys)
    per_device = {"ScienceQA": 14, "TextVQA": 14, "ImageNet": 16, "GQA": 6, "VizWiz": 14, "Grounding": 6,
                  "VQAv2": 8, "OCR-VQA": 10}
    assert {t: cfg.train.for_task(t).batch_size for t in per_device} == per_device
    for j, (task, b) in enumerate(per_device.items(), 1):
        assert cfg.train.for_task(task).grad_accum == 8
        steps = -(-300 // (b * 8))
        assert f"{j:<6}{task:<11}{300:>8}{steps:>7}{10:>7}" in out
        assert f"  {task:<10} {b * 8} = {b} x grad_accum 8 x 1 process(es)" in out
    # on CoIN's 8 GPUs, each task's effective batch is the scripts'
    assert {t: b * 8 * 8 for t, b in per_device.items()} == {
        "ScienceQA": 896, "TextVQA": 896, "ImageNet": 1024, "GQA": 384, "VizWiz": 896, "Grounding": 384,
        "VQAv2": 512, "OCR-VQA": 640}


def test_moving_gpus_by_train_grad_accum_is_refused_when_a_task_has_its_own(tmp_path, monkeypatch):
    """A folder trained on 2 processes continues on 1 with train.grad_accum doubled, unless a task keeps its own
    grad_accum (train.per_task): that task's effective batch would change under the same config."""
    from coin.engine.run_folder import RunFolderError, prepare_run_dir

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for own, refused in (({"epochs": 2}, False), ({"grad_accum": 4}, True)):
        out = tmp_path / f"run-{refused}"
        old = from_dict({"train": {"grad_accum": 1, "per_task": {"Grounding": own}}})
        prepare_run_dir(out, old)
        (out / "env-history.jsonl").write_text(json.dumps({"processes": 2}) + "\n")
        new = from_dict({"train": {"grad_accum": 2, "per_task": {"Grounding": own}}})
        if refused:
            with pytest.raises(RunFolderError):
                prepare_run_dir(out, new)
        else:
            prepare_run_dir(out, new)


@pytest.mark.slow
def test_a_run_trains_each_stage_at_its_task_s_batch(tmp_path, micro_config):
    from coin.api import run

    micro_config["train"]["per_task"] = {"Grounding": {"batch_size": 4, "lr": 5e-4}}
    out = tmp_path / "run"
    result = run(from_dict(micro_config), out, progress=False, log=lambda *a: None)
    steps = {d.name: json.loads((d / "train.json").read_text())["steps"] for d in (out / "stages").glob("0[12]-*")}
    assert steps == {"01-ImageNet": 3, "02-Grounding": 6}  # 24 samples at 8, then at 4
    lrs = [json.loads(line)["lr"] for line in (out / "stages" / "02-Grounding" / "train_log.jsonl").open()]
    assert max(lrs) == pytest.approx(5e-4)
    # the generation limits each task used, and the rule that set them, are on the run's card
    card = result["generation_card"]
    assert set(card) == {"ImageNet", "Grounding"}
    assert all(c["rule"] == "sized from the training answers" and c["max_new_tokens"] >= 1 for c in card.values())
    assert "generation-card" in (out / "report.html").read_text()
    # the same config continues in its folder
    assert run(from_dict(micro_config), out, progress=False, log=lambda *a: None)["matrix"] == result["matrix"]
