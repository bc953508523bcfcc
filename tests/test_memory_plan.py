"""The dry run's memory plan for every real config (issue #30, point 3).

The sizes come from the folder's config.json as transformers resolves it: llava-hf ships a partial
``text_config`` (Llama's defaults fill it), Qwen2-VL a flat one with its own vision tower. Folders here
are config.json-only copies of the real LLaVA-1.5-7B and Qwen2-VL-7B configs (public values, written
by hand), and tiny random-weight models (tests/tinyhf.py) whose real parameter count the estimate
must reproduce exactly. Nothing is downloaded and no model is loaded by a dry run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from coin.cli import main
from coin.config_load import load_config
from coin.engine.memory import CONTEXT_GIB, GIB, arch_from_config, estimate, sizes_for

REPO = Path(__file__).resolve().parent.parent
COIN_CONFIGS = sorted((REPO / "configs" / "coin").glob("**/*.yaml"))

# llava-hf/llava-1.5-7b-hf's config.json: the text config names only what differs from Llama's defaults
LLAVA_7B = {
    "architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100, "image_token_index": 32000,
    "model_type": "llava", "pad_token_id": 32001, "projector_hidden_act": "gelu",
    "text_config": {"_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"],
                    "max_position_embeddings": 4096, "model_type": "llama", "rms_norm_eps": 1e-05,
                    "torch_dtype": "float16", "vocab_size": 32064},
    "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.36.0.dev0",
    "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                      "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
                      "patch_size": 14, "projection_dim": 768, "vocab_size": 32000},
    "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "vocab_size": 32064,
}
# Qwen/Qwen2-VL-7B-Instruct's config.json: flat, the text sizes at the top level
QWEN2_VL_7B = {
    "architectures": ["Qwen2VLForConditionalGeneration"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151645, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
    "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656, "hidden_act": "silu",
    "hidden_size": 3584, "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 32768,
    "max_window_layers": 28, "model_type": "qwen2_vl", "num_attention_heads": 28, "num_hidden_layers": 28,
    "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.41.2", "use_cache": True,
    "use_sliding_window": False,
    "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                      "hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
                      "temporal_patch_size": 2},
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "vocab_size": 152064,
}
# Qwen/Qwen2.5-VL-7B-Instruct's: the same LM, a tower with a gated MLP and RMSNorms
QWEN2_5_VL_7B = {
    **{k: v for k, v in QWEN2_VL_7B.items() if k != "vision_config"},
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
    "max_position_embeddings": 128000,
    "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                      "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2},
}
HUB_PREPROCESSOR = {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2,
                    "merge_size": 2, "image_processor_type": "Qwen2VLImageProcessor"}


def _folder(root: Path, name: str, config: dict, **files: dict) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    for file, data in files.items():
        (folder / f"{file}.json").write_text(json.dumps(data))
    return folder


def _yaml(root: Path, model: dict, dist: dict | None = None, batch: int = 16, logits: str = "labelled") -> Path:
    """A run config as configs/coin/ ship it (LoRA r 128, bf16, checkpointing, 16 per GPU) on ``model``;
    ``logits``: train.logits (``all``: the whole sequence's logits, as before coin.engine.lm_loss)."""
    cfg = {"name": "memory", "model": {"dtype": "bf16", "gradient_checkpointing": True, "attn_implementation": "sdpa",
                                       **model},
           "adapter": {"type": "lora", "r": 128, "alpha": 256},
           "train": {"batch_size": batch, "precision": "bf16", "logits": logits}}
    if dist:
        cfg["dist"] = dist
    path = root / f"run-{len(list(root.glob('run-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _dry_run(path: Path, capsys) -> str:
    main(["run", "--dry-run", "--config", str(path)])
    return capsys.readouterr().out


def _memory(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(("memory per GPU", "memory plan")))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return lines[start:end]


def _params(tmp_path: Path, model: dict) -> dict:
    sizes, why = sizes_for(load_config(_yaml(tmp_path, model)).model)
    assert sizes is not None, why
    return sizes


@pytest.mark.parametrize("name,config,real", [("llava", LLAVA_7B, 7.063e9), ("qwen2-vl", QWEN2_VL_7B, 8.291e9),
                                              ("qwen2-vl", QWEN2_5_VL_7B, 8.292e9)],
                         ids=["llava-1.5-7b", "qwen2-vl-7b", "qwen2.5-vl-7b"])
def test_real_configs_resolve_to_the_real_parameter_count(name, config, real, tmp_path):
    """LLaVA-1.5-7B has 7.06B parameters, Qwen2-VL-7B and Qwen2.5-VL-7B 8.29B (their model cards)."""
    folder = _folder(tmp_path, "model", config)
    sizes = _params(tmp_path, {"name": name, "path": str(folder)})
    a = sizes.arch
    frozen = a.lm_params() + a.vision_params() + a.projector_params()
    assert abs(frozen - real) <= 0.02 * real, frozen
    assert "as transformers resolves it" in sizes.source
    if name == "llava":  # Llama's defaults behind the partial text_config; CLIP-L/14 at 336 px
        assert (a.hidden, a.ffn, a.layers, a.heads, a.kv_heads, a.vocab) == (4096, 11008, 32, 32, 32, 32064)
        assert a.tokens_per_image == 576 and sizes.max_length == 2048
    else:  # model.max_pixels' default 1280 x 28 x 28: at most 1280 tokens per image
        assert (a.hidden, a.layers, a.kv_heads, a.vocab, a.merge, a.patch) == (3584, 28, 4, 152064, 2, 14)
        assert a.tokens_per_image == 1280 and "model.max_pixels" in sizes.image


def test_qwen_image_tokens_follow_max_pixels(tmp_path):
    """model.max_pixels null: the folder's preprocessor_config.json (the hub's 12845056: 16384 tokens)."""
    folder = _folder(tmp_path, "qwen", QWEN2_VL_7B, preprocessor_config=HUB_PREPROCESSOR,
                     tokenizer_config={"model_max_length": 32768})
    sizes = _params(tmp_path, {"name": "qwen2-vl", "path": str(folder), "max_pixels": None})
    assert sizes.arch.tokens_per_image == 12845056 // 28**2 == 16384
    assert "preprocessor_config.json" in sizes.image
    assert sizes.max_length == 32768 and "tokenizer" in sizes.max_length_from
    small = _params(tmp_path, {"name": "qwen2-vl", "path": str(folder), "max_pixels": 448 * 448, "max_length": 1024})
    assert small.arch.tokens_per_image == 256 and small.max_length == 1024


def test_dry_run_prints_a_memory_plan_for_llava_and_qwen2_vl(no_loading, capsys):
    """Nothing was printed for these before: only llava-pretrain's two folders gave sizes."""
    llava = _folder(no_loading, "llava-1.5-7b-hf", LLAVA_7B)
    qwen = _folder(no_loading, "Qwen2-VL-7B-Instruct", QWEN2_VL_7B, preprocessor_config=HUB_PREPROCESSOR)
    for model, first in (({"name": "llava", "path": str(llava)}, "576 image + 104 text"),
                         ({"name": "qwen2-vl", "path": str(qwen)}, "1280 image + 104 text"),
                         ({"name": "hf", "path": str(qwen)}, "1280 image + 104 text")):
        memory = _memory(_dry_run(_yaml(no_loading, model), capsys))
        assert memory[0].startswith("memory per GPU (estimate") and first in memory[0], memory
        assert any(line.startswith("  image tokens: ") for line in memory)
        assert any(line.startswith("  2 GPUs, checkpointing on : DDP ") for line in memory)
        longest = ("  at the longest sequence, 2048 tokens (llava's default" if model["name"] == "llava"
                   else "  longest sequence: not bounded (model.max_length unset and no tokenizer limit found)")
        assert any(line.startswith(longest) for line in memory), memory
        assert memory[-1] == "  GPU memory: not stated (dist.gpu_memory_gib), so nothing is checked against it"
        frozen = float(re.search(r"parameters: ([\d.]+)B frozen", "\n".join(memory)).group(1))
        assert frozen == pytest.approx(7.06 if model["name"] == "llava" else 8.29, abs=0.02)


def test_a_hub_id_says_the_config_json_is_needed(no_loading, capsys):
    memory = _memory(_dry_run(_yaml(no_loading, {"name": "qwen2-vl", "path": "Qwen/Qwen2-VL-7B-Instruct"}), capsys))
    assert memory == [memory[0]] and memory[0].startswith(
        "memory plan: needs the model's config.json; run with a local folder or fetch it first: "
        "huggingface-cli download Qwen/Qwen2-VL-7B-Instruct config.json")


def test_an_unknown_architecture_says_why(no_loading, capsys):
    folder = _folder(no_loading, "qwen-vl-chat", {"model_type": "qwen", "architectures": ["QWenLMHeadModel"],
                                                  "hidden_size": 4096, "visual": {"width": 1664}})
    memory = _memory(_dry_run(_yaml(no_loading, {"name": "hf", "path": str(folder)}), capsys))
    assert memory == [f"memory plan: no estimate: {folder / 'config.json'}: model_type 'qwen' (QWenLMHeadModel) "
                      "is not an architecture the estimate knows (LLaVA: model_type llava (llava, hf) or "
                      "llava-pretrain's Vicuna + CLIP folders; Qwen2-VL / Qwen2.5-VL: qwen2_vl / qwen2_5_vl "
                      "(qwen2-vl, hf))"]


def test_a_plan_over_the_gpu_is_refused_with_the_largest_batch_that_fits(no_loading, capsys):
    """LLaVA-1.5-7B, 16 per GPU under DDP: ~29 GiB; a 24 GiB card is refused and told the batch that fits."""
    folder = _folder(no_loading, "llava", LLAVA_7B)
    model = {"name": "llava", "path": str(folder)}
    memory = _memory(_dry_run(_yaml(no_loading, model, logits="all", dist={"gpu_memory_gib": 24}), capsys))
    refused = [line for line in memory if "REFUSED" in line]
    assert len(refused) == 1 and refused[0].startswith("  GPU memory 24 GiB (dist.gpu_memory_gib), DDP: REFUSED: 16 "
                                                       "per GPU need ~"), memory
    fits = int(re.search(r"the largest per-GPU batch that fits is (\d+) ", refused[0]).group(1))
    arch = sizes_for(load_config(_yaml(no_loading, model, logits="all")).model)[0].arch

    def need(batch: int) -> float:
        return estimate(arch, r=128, batch=batch, tokens=680, weight_bytes=2, act_bytes=2, processes=2,
                        checkpointing=True)["ddp"]["total"] / GIB + CONTEXT_GIB

    assert need(fits) <= 24 < need(fits + 1)
    assert f"--set train.batch_size={fits}" in refused[0]
    memory = _memory(_dry_run(_yaml(no_loading, model, logits="all", dist={"gpu_memory_gib": 80}), capsys))
    assert any(line.startswith("  GPU memory 80 GiB (dist.gpu_memory_gib), DDP: fits: 16 per GPU") for line in memory)
    assert not any("REFUSED" in line or "over at" in line for line in memory)
    # 40 GiB: ~680-token samples fit, a micro-batch padded to LLaVA's 2048 tokens does not
    memory = _memory(_dry_run(_yaml(no_loading, model, logits="all", dist={"gpu_memory_gib": 40}), capsys))
    over = [line for line in memory if line.startswith("    over at the longest sequence: 16 samples of 2048 tokens")]
    assert len(over) == 1 and re.search(r"; \d+ per GPU fit at that length", over[0]), memory
    # FSDP: one verdict per process count shown (2, 4, 8 when launched alone)
    memory = _memory(_dry_run(_yaml(no_loading, model, logits="all", dist={"gpu_memory_gib": 24, "strategy": "fsdp"}), capsys))
    assert [line.split(":")[0] for line in memory if line.startswith("  GPU memory")] == [
        f"  GPU memory 24 GiB (dist.gpu_memory_gib), FSDP over {n} GPUs" for n in (2, 4, 8)]


def test_tiny_folders_estimate_their_real_parameter_count(tmp_path):
    """The formula's parameter count against the tiny random-weight models (tests/tinyhf.py), to the parameter."""
    from tinyhf import build_llava, build_qwen2_vl
    from transformers import AutoModelForImageTextToText

    for name, build in (("llava", build_llava), ("qwen2-vl", build_qwen2_vl)):
        folder = build(tmp_path / name)
        sizes = _params(tmp_path, {"name": name, "path": str(folder)})
        a = sizes.arch
        model = AutoModelForImageTextToText.from_pretrained(folder)
        real = sum(p.numel() for p in model.parameters())
        assert a.lm_params() + a.vision_params() + a.projector_params() == real, (name, sizes)


@pytest.mark.parametrize("path", COIN_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_shipped_config_prints_a_plan_or_says_why_not(path, no_loading, capsys):
    """The shipped paths are placeholders (or hub ids): each dry run says exactly why there is no estimate."""
    cfg = load_config(path)
    memory = _memory(_dry_run(path, capsys))
    opts = cfg.model.options
    if cfg.model.name == "qwen2-vl":  # a hub id
        assert memory == [memory[0]] and memory[0].startswith("memory plan: needs the model's config.json")
    elif cfg.model.name == "minigpt-v2":  # no config.json describes EVA ViT-g
        assert memory == ["memory plan: no estimate for model.name 'minigpt-v2': it has no model.path (nor "
                          "model.lm_path + model.vision_path) whose config.json gives the sizes; the estimate knows "
                          "LLaVA: model_type llava (llava, hf) or llava-pretrain's Vicuna + CLIP folders; Qwen2-VL / "
                          "Qwen2.5-VL: qwen2_vl / qwen2_5_vl (qwen2-vl, hf)"]
    else:  # llava-pretrain's parts, Qwen-VL-Chat's folder: not there
        first = getattr(opts, "lm_path", None) or opts.path
        assert memory == [f"memory plan: no estimate: {Path(first) / 'config.json'} not found "
                          f"(model.{'lm_path' if cfg.model.name == 'llava-pretrain' else 'path'} is not there; "
                          "the sizes are read from it)"]


def test_the_shipped_llava_configs_print_a_plan_once_their_folders_hold_config_json(no_loading, capsys):
    """llava-pretrain's Vicuna and CLIP folders (their config.json only): the same 7B plan as llava-hf's."""
    path = REPO / "configs/coin/llava-1.5-7b/lora.yaml"
    opts = load_config(path).model.options
    text = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000}  # Llama's defaults
    clip = {"model_type": "clip", "vision_config": {**LLAVA_7B["vision_config"], "model_type": "clip_vision_model"},
            "text_config": {"model_type": "clip_text_model"}}
    _folder(no_loading, opts.lm_path, text)
    _folder(no_loading, opts.vision_path, clip)
    memory = _memory(_dry_run(path, capsys))
    assert memory[0].startswith("memory per GPU (estimate") and "16 samples of ~680 tokens (576 image + 104 text)" \
        in memory[0], memory
    assert "parameters: 7.06B frozen, 341M trainable" in "\n".join(memory)


def test_arch_from_config_still_reads_a_plain_llava_dict():
    """A dict with every size (the tiny model's, bench_fsdp's) is read as written, as before."""
    text = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "vocab_size": 100}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "image_size": 64, "patch_size": 16}
    a = arch_from_config({"text_config": text, "vision_config": vision})
    assert a is not None and a.vision == "clip" and a.tokens_per_image == 16 and not a.qkv_bias and not a.tied
    assert arch_from_config({"text_config": {"model_type": "llama"}, "vision_config": vision}) is None


def test_gpu_memory_gib_is_checked_and_never_blocks_a_resume():
    """dist.gpu_memory_gib: a number > 0 or null; only the dry run reads it, so a folder continues under another."""
    from coin.config import ConfigError
    from coin.config_load import from_dict
    from coin.engine.run_folder import OPERATIONAL_KEYS

    assert from_dict({"dist": {"gpu_memory_gib": 80}}).dist.gpu_memory_gib == 80
    assert from_dict({}).dist.gpu_memory_gib is None
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="gpu_memory_gib must be a number > 0"):
            from_dict({"dist": {"gpu_memory_gib": bad}})
    assert "dist.gpu_memory_gib" in OPERATIONAL_KEYS


def test_labelled_logits_bring_qwen2_vl_7b_at_16_per_gpu_well_under_80_gb(no_loading, capsys):
    """#30 point 2: the logits over a 152,064-word vocabulary were most of Qwen2-VL-7B's training memory
    at the shipped batch (16 x ~1,384 tokens); with the LM head on the labelled positions only
    (``train.logits: labelled``, the default) the plan drops by more than half and fits an 80 GB card."""
    folder = _folder(no_loading, "qwen", QWEN2_VL_7B)
    model = {"name": "qwen2-vl", "path": str(folder)}

    def ddp(lines: list[str]) -> tuple[float, float]:
        row = next(line for line in lines if line.startswith("  2 GPUs, checkpointing on"))
        total, acts = re.search(r"DDP ([\d.]+) GiB \(weights [\d.]+ GiB, adapter state [\d.]+ GiB, activations "
                                r"([\d.]+) GiB\)", row).groups()
        return float(total), float(acts)

    full = _memory(_dry_run(_yaml(no_loading, model, logits="all", dist={"gpu_memory_gib": 80}), capsys))
    part = _memory(_dry_run(_yaml(no_loading, model, dist={"gpu_memory_gib": 80}), capsys))
    assert "  logits: every position (train.logits: all)" in full
    assert any(line.startswith("  logits: the labelled positions only") for line in part)
    (t_full, a_full), (t_part, a_part) = ddp(full), ddp(part)
    assert t_full > 70 and a_full > 4 * a_part and t_part < 40, (full, part)
    assert any(line.startswith("  GPU memory 80 GiB (dist.gpu_memory_gib), DDP: fits: 16 per GPU") for line in part)
