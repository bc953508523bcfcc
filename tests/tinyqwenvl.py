"""A stand-in Qwen-VL-Chat folder: the released file layout, with tiny model code of our own as its remote code.

Qwen-VL-Chat's own code (modeling_qwen.py, visual.py, tokenization_qwen.py with its 150k-token
qwen.tiktoken) is not available to the tests, so ``build`` writes a folder with the same files
(config.json with ``auto_map``, configuration_qwen.py, modeling_qwen.py, visual.py,
qwen_generation_utils.py, tokenization_qwen.py + qwen.tiktoken, tokenizer_config.json,
generation_config.json and bf16 ``.bin`` shards with an index) whose code is the stand-in in
tests/fixtures/qwen_vl_chat_standin/. It loads only with ``trust_remote_code``, and exercises
coin's plumbing (folder checks, remote-code loading, ``<img>path</img>`` in the text, LoRA targets,
prompts, labels, decoding), not Qwen-VL-Chat's own code.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import torch

STANDIN = Path(__file__).resolve().parent / "fixtures" / "qwen_vl_chat_standin"
CODE = ["configuration_qwen.py", "modeling_qwen.py", "visual.py", "qwen_generation_utils.py", "tokenization_qwen.py"]
# 256 byte tokens, then <|endoftext|> <|im_start|> <|im_end|> <ref> </ref> <box> </box> <quad> </quad> <img>
IMAGE_START = 256 + 9


def config(vocab: int = 268) -> dict:
    return {
        "architectures": ["QWenLMHeadModel"], "model_type": "qwen",
        "auto_map": {"AutoConfig": "configuration_qwen.QWenConfig",
                     "AutoModelForCausalLM": "modeling_qwen.QWenLMHeadModel"},
        "vocab_size": vocab, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "layer_norm_epsilon": 1e-6, "rotary_emb_base": 10000, "torch_dtype": "bfloat16",
        "visual": {"heads": 2, "image_size": 28, "image_start_id": IMAGE_START, "layers": 1, "mlp_ratio": 2.0,
                   "output_dim": 32, "patch_size": 14, "width": 16},
    }


def build(folder: str | Path, seed: int = 0, shards: int = 2) -> Path:
    """Write the stand-in folder (random weights of ``seed``, bf16, in ``shards`` .bin files)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in CODE:
        shutil.copy(STANDIN / name, folder / name)
    (folder / "qwen.tiktoken").write_bytes(b"".join(base64.b64encode(bytes([b])) + f" {b}\n".encode()
                                                    for b in range(256)))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": 8192, "tokenizer_class": "QWenTokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_qwen.QWenTokenizer", None]}}, indent=1))
    (folder / "config.json").write_text(json.dumps(config(), indent=1))
    (folder / "generation_config.json").write_text(json.dumps({"chat_format": "chatml", "eos_token_id": 256,
                                                               "pad_token_id": 256, "max_new_tokens": 512}))
    cfg = AutoConfig.from_pretrained(str(folder), trust_remote_code=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=True)
    state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    keys = sorted(state)
    weight_map = {}
    for k in range(shards):
        name = f"pytorch_model-{k + 1:05d}-of-{shards:05d}.bin"
        part = {key: state[key] for key in keys[k::shards]}
        torch.save(part, folder / name)
        weight_map.update({key: name for key in part})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                     "weight_map": weight_map}, indent=1))
    return folder


def model_section(folder: str | Path, **extra) -> dict:
    """The ``model:`` section that loads the stand-in (remote code allowed, fp32 on the CPU)."""
    return {"name": "qwen-vl-chat", "path": str(folder), "trust_remote_code": True, "dtype": "fp32", **extra}
