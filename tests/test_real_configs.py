"""The shipped configs of the paper's experiments (configs/coin/) and the accelerate launch configs.

No GPU, weights or data here: every config must load, print its plan with ``coin run --dry-run``
without loading a model or reading data, list the missing files and exit 1; with stand-in files
in place it exits 0. The recipe of the main config is pinned against the paper's.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from coin.cli import main
from coin.config_load import load_config, section
from coin.engine.plan import model_files
from coin.models import BACKBONES
from coin.tasks import ORDERS, get_task

REPO = Path(__file__).resolve().parent.parent
COIN_CONFIGS = sorted((REPO / "configs" / "coin").glob("**/*.yaml"))
ACCELERATE_CONFIGS = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))


def _id(p: Path) -> str:
    return str(p.relative_to(REPO / "configs"))


def test_the_shipped_configs_exist_and_match_their_generator():
    names = {_id(p) for p in COIN_CONFIGS}
    for model in ("llava-1.5-7b", "llava-1.5-13b"):
        assert {f"coin/{model}/{stem}.yaml" for stem in ("lora", "moelora-8", "multitask", "zeroshot")} <= names
    assert {"coin/qwen2-vl-7b/lora.yaml", "coin/qwen2-vl-7b/zeroshot.yaml"} <= names
    spec = importlib.util.spec_from_file_location("coin_configs_generate", REPO / "configs" / "coin" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert generate.main(["--check"]) == 0, "configs/coin/ differs from generate.py: rerun it"


@pytest.mark.parametrize("path", COIN_CONFIGS, ids=_id)
def test_dry_run_of_every_config_lists_missing_files_and_exits_1(path, no_loading, capsys):
    cfg = load_config(path)
    assert cfg.data.benchmark == "coin" and cfg.name
    code = main(["run", "--config", str(path), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"run folder: runs/{cfg.name}" in out
    assert f"{cfg.data.root}  (MISSING)" in out
    first = ORDERS[cfg.tasks.order][0]
    assert f"1     {first:<11}" in out  # the stage table, in the config's order
    assert "model files:" in out
    weights = BACKBONES.get(cfg.model.name).weights(cfg.model)  # local parts (llava-pretrain...) or a hub id
    for w in weights:
        state = "(hub id, not checked offline)" if w.hub else "(MISSING)"
        assert f"{w.key}:" in out and f"{w.path}  {state}" in out
    # data root, image root, 8 tasks x (train, test), the answer files, and the backbone's local parts
    parts = sum(not w.hub for w in weights)
    assert f"MISSING ({2 + 16 + len(cfg.data.answers) + parts}):" in out
    assert cfg.data.answers == {"TextVQA": "TextVQA_0.5.1_val.json"}  # the paper's TextVQA protocol


def _fake_inputs(root: Path, cfg) -> None:
    """Stand-ins for the data files and weights a config names, relative to ``root``."""
    for task in ORDERS[cfg.tasks.order]:
        folder = root / cfg.data.root / "Instructions_Original" / get_task(task).folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train.json").write_text(json.dumps([{}] * 300))
        (folder / "test.json").write_text(json.dumps([{}] * 10))
    for answers in cfg.data.answers.values():  # the official answer files (coin.data.answers)
        (root / cfg.data.root / answers).write_text(json.dumps({"data": []}))
    (root / cfg.data.image_root).mkdir(parents=True, exist_ok=True)
    own = cfg.model.options  # the backbone's keys (model.lm_path...), parsed
    for key in ("lm_path", "vision_path"):
        if getattr(own, key, None):
            (root / getattr(own, key)).mkdir(parents=True, exist_ok=True)
    if getattr(own, "projector_path", None):
        (root / own.projector_path).parent.mkdir(parents=True, exist_ok=True)
        (root / own.projector_path).write_bytes(b"stand-in")


@pytest.mark.parametrize("name", ["llava-1.5-7b/lora.yaml", "llava-1.5-7b/lora-10type.yaml",
                                  "qwen2-vl-7b/lora.yaml"])
def test_dry_run_exits_0_when_every_file_is_there(name, no_loading, capsys):
    path = REPO / "configs" / "coin" / name
    cfg = load_config(path)
    _fake_inputs(no_loading, cfg)
    code = main(["run", "--config", str(path), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "MISSING" not in out
    assert "effective batch: 16 = 16 x grad_accum 1 x 1 process(es)" in out
    # 300 samples at the config's volume, 16 per optimizer step
    assert f"1     {ORDERS[cfg.tasks.order][0]:<11}{300:>8}{19:>7}{10:>7}" in out
    if cfg.data.instructions == "10type":  # no 10type folder: derived from the Original files
        assert "train.json (-> 10type)" in out


def test_dry_run_under_8_processes_shows_llava_s_batch_of_128(no_loading, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "8")
    main(["run", "--config", str(REPO / "configs/coin/llava-1.5-7b/lora-vol0.4.yaml"), "--dry-run"])
    assert "effective batch: 128 = 16 x grad_accum 1 x 8 process(es)" in capsys.readouterr().out


def test_the_7b_sequential_config_has_the_paper_s_recipe():
    cfg = load_config(REPO / "configs/coin/llava-1.5-7b/lora.yaml")
    assert (cfg.method, cfg.tasks.order, cfg.data.instructions) == ("sequential", "paper", "original")
    assert cfg.data.volume == 1.0
    assert (cfg.adapter.type, cfg.adapter.r, cfg.adapter.alpha, cfg.adapter.train_projector) == ("lora", 128, 256, True)
    t = cfg.train
    assert (t.lr, t.warmup_ratio, t.epochs, t.weight_decay, t.precision) == (2e-4, 0.03, 1.0, 0.0, "bf16")
    assert t.batch_size * t.grad_accum * 8 == 128  # LLaVA-1.5's effective batch on 8 GPUs
    m = cfg.model
    assert (m.name, m.dtype, m.gradient_checkpointing) == ("llava-pretrain", "bf16", True)
    assert m.options.lm_path and m.options.vision_path and m.options.projector_path.endswith("mm_projector.bin")


def test_paper_configs_train_the_projector_at_the_main_lr_as_coin_did():
    """CoIN's trainer had no projector group, so mm_projector_lr was ignored: the projector
    trained at 2e-4. Every shipped paper config must do the same (projector_lr unset)."""
    files = sorted((REPO / "configs/coin").rglob("*.yaml"))
    assert len(files) >= 20
    own_lr = {"minigpt-v2": 1e-5, "qwen-vl-chat": 1e-5}  # CoIN's scripts for its other two MLLMs
    for path in files:
        t = load_config(path).train
        assert t.projector_lr is None, path
        assert t.lr == own_lr.get(path.parent.name, 2e-4), path
    readme = (REPO / "configs/coin/README.md").read_text()
    assert "LLaVA-1.5's LoRA recipe" in readme and "mm_projector_lr" in readme


def test_the_studies_vary_one_thing_each():
    base = yaml.safe_load((REPO / "configs/coin/llava-1.5-7b/lora.yaml").read_text())
    expect = {
        "lora-alphabet": {"tasks.order": "alphabet"},
        "lora-diverse": {"data.instructions": "diverse"},
        "lora-10type": {"data.instructions": "10type"},
        **{f"lora-vol{v}": {"data.volume": v} for v in (0.1, 0.2, 0.4, 0.6, 0.8)},
        "lora-r192-vol0.4": {"data.volume": 0.4, "adapter.r": 192, "adapter.alpha": 384},
        "lora-r256-vol0.4": {"data.volume": 0.4, "adapter.r": 256, "adapter.alpha": 512},
        **{f"moelora-{n}": {"adapter.type": "moelora", "adapter.experts": n} for n in (2, 4, 8)},
        "ewc-vol0.4": {"data.volume": 0.4, "method": "ewc", "method_options.samples": 1000,
                       "method_options.lambda_": 0.1},
        "lwf-vol0.4": {"data.volume": 0.4, "method": "lwf", "method_options.samples": 100,
                       "method_options.lambda_": 0.1},
    }

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    b = flat(base)
    for stem, changes in expect.items():
        f = flat(yaml.safe_load((REPO / f"configs/coin/llava-1.5-7b/{stem}.yaml").read_text()))
        diff = {k: f.get(k) for k in set(b) | set(f) if k != "name" and f.get(k) != b.get(k)}
        assert diff == changes, stem


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=_id)
def test_accelerate_configs_parse_with_accelerate_s_own_loader(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    cfg = load_config_from_file(str(path))  # unknown top-level keys raise here
    assert isinstance(cfg, ClusterConfig) and cfg.num_processes == 8
    # fsdp.yaml is a plain multi-process launch: coin shards the model itself under dist.strategy: fsdp
    kind = {"ddp": "MULTI_GPU", "fsdp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED"}[path.stem]
    assert cfg.distributed_type.value == kind
    parser = launch_command_parser()
    dests = {a.dest for a in parser._actions}
    # nested keys become launcher flags (fsdp_config.x -> --fsdp_x); a typo would be dropped silently
    unknown = [k for k in cfg.fsdp_config if (k if k.startswith("fsdp") else f"fsdp_{k}") not in dests]
    unknown += [k for k in cfg.deepspeed_config if k not in dests]
    assert not unknown
    args = parser.parse_args(["--config_file", str(path), "train.py"])
    args, defaults, _ = _validate_launch_command(args)
    assert args.num_processes == 8
    if kind == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == int(path.stem[-1])
        args.deepspeed_fields_from_accelerate_config = list(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
        assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == path.stem[-1]
        assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    else:
        prepare_multi_gpu_env(args)
        if path.stem == "fsdp":
            assert "dist.strategy=fsdp" in path.read_text()


def test_model_files_tell_hub_ids_from_missing_folders(tmp_path):
    (tmp_path / "llava").mkdir()
    (tmp_path / "proj").mkdir()
    lines, missing = model_files(section("model", name="llava", path=str(tmp_path / "llava")))
    assert lines == [f"  model.path:           {tmp_path / 'llava'}  (present)"] and missing == []
    lines, missing = model_files(section("model", name="llava", path="llava-hf/llava-1.5-7b-hf"))
    assert "(hub id, not checked offline)" in lines[0] and missing == []
    for local in (str(tmp_path / "absent"), "./absent/model", "absent"):
        _, missing = model_files(section("model", name="llava", path=local))
        assert missing == [str(Path(local))], local
    _, missing = model_files(section("model", name="llava-pretrain", lm_path="org/vicuna", vision_path=str(tmp_path),
                                     projector_path=str(tmp_path / "proj")))
    assert missing == ["org/vicuna", str(tmp_path / "proj")]  # parts are never hub ids; a folder is not a .bin
