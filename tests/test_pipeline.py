"""The whole pipeline on a micro config: run folder, resume, refusals, CLI errors."""

import json
import math

import pytest
import torch
import yaml

from coin.cli import main
from coin.config_load import from_dict
from coin.api import run
from coin.engine.run_folder import RunFolderError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory, micro_factory):
    out = tmp_path_factory.mktemp("runs") / "micro"
    result = run(from_dict(micro_factory()), out, progress=False, log=lambda *a: None)
    return out, result


def test_run_folder_has_everything(micro_run):
    out, result = micro_run
    assert (out / "config.yaml").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["tasks"]["order"] == ["ImageNet", "Grounding"]
    for stage in ("01-ImageNet", "02-Grounding"):
        d = out / "stages" / stage
        assert (d / "adapter" / "adapter_model.safetensors").is_file()
        assert (d / "DONE").is_file()
    rows = [json.loads(line) for line in (out / "stages" / "02-Grounding" / "predictions" / "ImageNet.jsonl").open()]
    assert len(rows) == 8
    assert {"question_id", "output", "parsed", "score", "tag"} <= set(rows[0])
    assert not (out / "stages" / "01-ImageNet" / "predictions" / "Grounding.jsonl").exists()  # eval: seen
    m = json.loads((out / "matrix.json").read_text())
    assert m == result
    assert m["tasks"] == ["ImageNet", "Grounding"]
    assert m["matrix"][0][1] is None and m["matrix"][1][0] is not None
    assert len(m["zero_shot"]) == 2
    # metrics recomputed from the stored matrix agree
    A = m["matrix"]
    assert m["metrics"]["acc"] == pytest.approx((A[1][0] + A[1][1]) / 2)
    assert m["metrics"]["bwt"] == pytest.approx((A[1][0] - A[0][0]) / 2)
    assert m["cost"]["trainable_params"] > 0
    for f in ("report.md", "report.html", "heatmap.png"):
        assert (out / f).is_file()


def test_same_seed_same_matrix_and_resume_skips(micro_run, tmp_path, micro_config):
    MICRO = micro_config
    out, result = micro_run
    again = run(from_dict(MICRO), tmp_path / "again", progress=False, log=lambda *a: None)
    assert again["matrix"] == result["matrix"] and again["zero_shot"] == result["zero_shot"]
    # re-running on a finished folder recomputes nothing and gives the same numbers
    logs = []
    before = (out / "stages" / "01-ImageNet" / "scores.json").stat().st_mtime_ns
    resumed = run(from_dict(MICRO), out, progress=False, log=logs.append)
    assert resumed["matrix"] == result["matrix"]
    assert (out / "stages" / "01-ImageNet" / "scores.json").stat().st_mtime_ns == before
    assert sum("skipped" in line for line in logs) == 2


def test_changed_config_is_refused_naming_keys(micro_run, micro_config):
    out, _ = micro_run
    micro_config["train"]["lr"] = 5e-4
    with pytest.raises(RunFolderError) as e:
        run(from_dict(micro_config), out, progress=False, log=lambda *a: None)
    assert "train.lr: 0.001 -> 0.0005" in str(e.value)


def test_cli_rejects_unknown_key_before_anything(tmp_path, capsys):
    code = main(["run", "--out", str(tmp_path / "r"), "--set", "train.lrr=1"])
    assert code == 2
    assert "unknown key 'train.lrr'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_missing_config_file(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml does not exist" in capsys.readouterr().err


def test_cli_missing_image_stops_before_training(tmp_path, capsys, micro_config):
    from coin.benchmarks.synth.generator import generate

    root = generate(tmp_path / "data", seed=0, n_train=4, n_test=2, n_pretrain=0, tasks=["ImageNet"])
    (root / "images" / "ImageNet" / "train-000002.png").unlink()
    cfg = tmp_path / "c.yaml"
    micro_config["data"] = {"benchmark": "coin", "root": str(root), "image_root": str(root / "images")}
    micro_config["tasks"]["order"] = ["ImageNet"]
    cfg.write_text(yaml.safe_dump(micro_config))
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "ImageNet train ImageNet-train-000002" in err and "train-000002.png" in err
    assert not (tmp_path / "r").exists()


def _method_names():
    from coin.methods import METHODS

    return METHODS.names()


@pytest.mark.parametrize("method", _method_names())
def test_every_method_runs_a_two_task_stream_and_resumes(method, micro_config, tmp_path):
    """Contract over the method registry: a new method gets this test for free."""
    import shutil

    micro_config["method"] = method
    if method == "ewc":
        micro_config["method_options"] = {"samples": 8}
    if method == "lwf":
        micro_config["method_options"] = {"samples": 4, "batch_size": 2}
    if method == "mrlora":  # the release's 40 router epochs are the contract's slowest part; 4 say as much
        micro_config["method_options"] = {"router_epochs": 4}
    out = tmp_path / method
    first = run(from_dict(micro_config), out, progress=False, log=lambda *a: None)
    assert first["tasks"] == ["ImageNet", "Grounding"]
    assert all(v is not None for v in (first["matrix"][1][0], first["matrix"][1][1]))
    # lose the last stage entirely: the resumed run recomputes it from stage 1's saved state
    shutil.rmtree(out / "stages" / "02-Grounding")
    again = run(from_dict(micro_config), out, progress=False, log=lambda *a: None)
    assert again["matrix"] == first["matrix"]
    if method == "multitask":  # only its last row is the multi-task model
        assert first["metrics"]["maa"] is None and first["metrics"]["acc"] is not None


OWN_ADAPTER_KEYS = {"lora": {}, "moelora": {"experts": 2}}  # each adapter's own keys, beside the common ones


@pytest.mark.parametrize("adapter", sorted(OWN_ADAPTER_KEYS))
def test_every_adapter_runs_and_saves_safetensors(adapter, micro_config, tmp_path):
    micro_config["adapter"] = {"type": adapter, "r": 4, "alpha": 8, **OWN_ADAPTER_KEYS[adapter]}
    result = run(from_dict(micro_config), tmp_path / adapter, progress=False, log=lambda *a: None)
    assert (tmp_path / adapter / "stages" / "02-Grounding" / "adapter" / "adapter_model.safetensors").is_file()
    assert result["cost"]["trainable_params"] > 0


def test_a_plugin_method_from_a_file_runs(micro_config, tmp_path):
    """The README's example method: one file, registered through the ``plugins`` key."""
    from pathlib import Path

    micro_config["plugins"] = [str(Path(__file__).parent.parent / "examples" / "anchor.py")]
    micro_config["method"] = "anchor"
    micro_config["method_options"] = {"lambda_": 0.5}
    result = run(from_dict(micro_config), tmp_path / "anchor", progress=False, log=lambda *a: None)
    assert result["method"] == "anchor"
    assert (tmp_path / "anchor" / "stages" / "01-ImageNet" / "method-anchor.safetensors").is_file()
    micro_config["method_options"] = {"lambda": 0.5}
    with pytest.raises(Exception, match="method_options.lambda"):
        from_dict(micro_config)


def test_dry_run_prints_the_plan_and_missing_files(tmp_path, capsys):
    code = main(["run", "--dry-run", "--set", "data.benchmark=coin", "--set", f"data.root={tmp_path}",
                 "--set", "train.grad_accum=4", "--set", "tasks.order=[GQA, VizWiz]"])
    out = capsys.readouterr().out
    assert code == 1
    assert "effective batch: 64 = 16 x grad_accum 4 x 1 process(es)" in out
    assert f"{tmp_path}/Instructions_Original/GQA/train.json (MISSING)" in out
    assert "MISSING (4)" in out
    (tmp_path / "Instructions_Original" / "GQA").mkdir(parents=True)
    (tmp_path / "Instructions_Original" / "GQA" / "train.json").write_text(json.dumps([{}] * 40))
    main(["run", "--dry-run", "--set", "data.benchmark=coin", "--set", f"data.root={tmp_path}",
          "--set", "tasks.order=[GQA, VizWiz]"])
    out = capsys.readouterr().out
    assert "1     GQA              40      3      ?" in out  # 40 samples / batch 16 -> 3 steps


def test_environment_is_recorded_and_reported(micro_run):
    out, _ = micro_run
    env = json.loads((out / "env.json").read_text())
    for key in ("python", "torch", "transformers", "peft", "accelerate", "device", "seed", "coin_commit", "coin_dirty"):
        assert key in env
    from coin.machine import cpu_identity

    assert env["cpu"] == cpu_identity()  # the CPU kind its bits depend on (tests/test_machine.py)
    assert env["lock"]["file"] == "constraints.txt" and env["lock"]["pinned"] > 50  # the README's versions (coin.lock)
    report = (out / "report.md").read_text()
    assert "## Environment" in report and env["torch"] in report


def test_untrained_stages_reuse_answers_of_identical_weights(micro_config, tmp_path):
    """Zero-shot (and multi-task before its last stage) train nothing: their stages reuse the
    answers of the same weights instead of generating them again, and those answers are the
    ones a fresh evaluation with the (identity) adapter attached gives."""
    micro_config["method"] = "zeroshot"
    logs: list[str] = []
    run(from_dict(micro_config), tmp_path / "reuse", progress=False, log=logs.append)
    assert any("reusing the answers" in m for m in logs)
    stages = tmp_path / "reuse" / "stages"
    zs = (stages / "00-zeroshot" / "predictions" / "ImageNet.jsonl").read_bytes()
    assert (stages / "01-ImageNet" / "predictions" / "ImageNet.jsonl").read_bytes() == zs
    assert (stages / "02-Grounding" / "predictions" / "ImageNet.jsonl").read_bytes() == zs
    # without a zero-shot row, stage 1 generates with the fresh adapter attached: same bytes
    micro_config["eval"]["zero_shot"] = False
    run(from_dict(micro_config), tmp_path / "fresh", progress=False, log=lambda *a: None)
    fresh = tmp_path / "fresh" / "stages"
    assert (fresh / "01-ImageNet" / "predictions" / "ImageNet.jsonl").read_bytes() == zs
    assert (fresh / "02-Grounding" / "predictions" / "Grounding.jsonl").read_bytes() == \
        (stages / "00-zeroshot" / "predictions" / "Grounding.jsonl").read_bytes()


def test_gradient_checkpointing_changes_memory_not_results(micro_config, tmp_path):
    """model.gradient_checkpointing recomputes activations in backward: the same numbers."""
    micro_config["eval"]["zero_shot"] = False
    plain = run(from_dict(micro_config), tmp_path / "plain", progress=False, log=lambda *a: None)
    micro_config["model"]["gradient_checkpointing"] = True
    ckpt = run(from_dict(micro_config), tmp_path / "ckpt", progress=False, log=lambda *a: None)
    assert ckpt["matrix"] == plain["matrix"]
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "plain" / "stages" / "02-Grounding" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "ckpt" / "stages" / "02-Grounding" / "adapter" / "adapter_model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    from coin.models import load_model

    vlm = load_model(from_dict(micro_config).model, log=lambda *a: None, progress=False)
    from coin.models.modes import activation_checkpointing_on

    assert activation_checkpointing_on(vlm.model)  # it was really on


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(precision, micro_config, tmp_path):
    """train.precision autocasts the forward (fp16 with loss scaling); the adapter still learns."""
    micro_config["train"]["precision"] = precision
    micro_config["eval"]["zero_shot"] = False
    result = run(from_dict(micro_config), tmp_path / precision, progress=False, log=lambda *a: None)
    stats = json.loads((tmp_path / precision / "stages" / "01-ImageNet" / "train.json").read_text())
    assert math.isfinite(stats["final_loss"]) and stats["skipped_batches"] == 0
    assert result["matrix"][1][1] is not None
    from safetensors.torch import load_file

    adapter = load_file(str(tmp_path / precision / "stages" / "02-Grounding" / "adapter" / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.float().abs().sum() > 0 for v in lora_b)  # B starts at 0: it trained


def test_projector_lr_applies_to_the_projector_only(micro_config, tmp_path):
    """train.projector_lr = 0 keeps the projector at its base weights while LoRA trains."""
    from safetensors.torch import load_file

    micro_config["eval"]["zero_shot"] = False
    micro_config["tasks"]["order"] = ["ImageNet"]
    adapters = {}
    for name, lr in (("shared", None), ("frozen", 0.0)):
        micro_config["train"]["projector_lr"] = lr
        run(from_dict(micro_config), tmp_path / name, progress=False, log=lambda *a: None)
        adapters[name] = load_file(str(tmp_path / name / "stages" / "01-ImageNet" / "adapter" / "adapter_model.safetensors"))
    from coin.models import load_model

    base = load_model(from_dict(micro_config).model, log=lambda *a: None, progress=False).model.state_dict()
    for name, expect_same in (("frozen", True), ("shared", False)):
        proj = {k: v for k, v in adapters[name].items() if "multi_modal_projector" in k}
        assert proj
        for k, v in proj.items():
            base_key = "model.multi_modal_projector." + k.split("multi_modal_projector.")[1].replace("modules_to_save.", "")
            base_key = base_key.replace("default.", "") if base_key not in base else base_key
            assert torch.equal(v, base[base_key]) == expect_same, (name, k)
        lora_b = [v for k, v in adapters[name].items() if "lora_B" in k]
        assert all(v.abs().sum() > 0 for v in lora_b)  # LoRA trained in both


def test_a_folder_in_use_is_refused(micro_config, tmp_path):
    """A second process on the same run folder is refused instead of interleaving its writes."""
    import fcntl

    out = tmp_path / "busy"
    cfg = from_dict(micro_config)
    from coin.engine.run_folder import prepare_run_dir

    prepare_run_dir(out, cfg)
    with open(out / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # stands in for a running coin process
        with pytest.raises(RunFolderError, match="in use by another coin process"):
            run(cfg, out, progress=False, log=lambda *a: None)
    assert not (out / "stages").exists()  # nothing was written
    run(cfg, out, progress=False, log=lambda *a: None)  # released: it runs
    assert (out / "matrix.json").is_file()


def test_knowledge_matrix_is_in_matrix_json_report_and_metrics(micro_run, capsys):
    """The knowledge column (coin.tasks.knowledge): content in any format, never below the paper score."""
    import json

    from coin.cli import main

    out, result = micro_run
    k = result["knowledge"]
    assert k is not None and len(k["matrix"]) == len(result["matrix"])
    for krow, prow in zip(k["matrix"], result["matrix"]):
        for kv, pv in zip(krow, prow):
            assert (kv is None) == (pv is None)
            assert kv is None or kv >= pv - 1e-9  # a credited answer has the right content
    assert set(k["metrics"]) >= {"maa", "bwt", "acc"}
    assert set(result["knowledge_tags"]) == {"ImageNet", "Grounding"}
    assert sum(result["knowledge_tags"]["ImageNet"].values()) == 8  # every test answer tagged
    report = (out / "report.md").read_text()
    assert "Knowledge matrix (content, any format)" in report and report.startswith("# CoIN-Synth report: micro")
    assert main(["metrics", str(out / "matrix.json"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["knowledge"]["acc"] == pytest.approx(k["metrics"]["acc"])
