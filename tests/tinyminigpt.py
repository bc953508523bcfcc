"""A tiny random MiniGPT-v2, written as its authors release it: three pieces on disk.

- ``eva_vit_g.pth``: a torch-saved plain state dict with EVA's key names, one block more than
  the model uses (as the real file has 40 for 39) and ``pos_embed`` for a smaller grid than the
  model's image size (as the real one is 16x16 for 448 / 14 = 32), in fp16 (assumed: the
  released file's dtype was not confirmed);
- ``checkpoint_stage2.pth``: a torch-saved dict whose ``model`` entry holds ``llama_proj`` and
  the LoRA pairs of q_proj and v_proj under MiniGPT-v2's key names, beside an optimizer state,
  a config dict and an epoch, as its training runner saves them;
- ``llama/``: a ``LlamaForCausalLM`` folder with a tokenizer that has ``<s>``, ``</s>`` and no pad.

Sizes: ViT width 16, 2 heads, patch 14, 56-pixel images (16 patches -> 4 LM tokens); LM width 32.
"""

from __future__ import annotations

from pathlib import Path

import torch

VIT_WIDTH, VIT_HIDDEN, PATCH, FILE_GRID, FILE_BLOCKS = 16, 24, 14, 2, 3
IMAGE_SIZE, VIT_DEPTH, VIT_HEADS = 56, 2, 2
LM_WIDTH, LM_LAYERS, LORA_R = 32, 2, 4
TEXTS = ["[INST] <Img></Img> What is the object in the image? Answer the question using a single word or "
         "phrase. [/INST] a red circle", "[vqa] [refer] Please provide the bounding box coordinate of the region this "
         "sentence describes: the big square {<12><34><56><78>} [0.12, 0.34, 0.56, 0.78]", "yes no blue green 0123456789"]


def tokenizer(vocab_size: int = 320):
    """A byte-level BPE tokenizer with Llama's special tokens (<unk> <s> </s>) and, like Llama-2's, no pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tinyhf import corpus

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TEXTS * 10 + corpus(4), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def vit_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """EVA ViT keys, FILE_BLOCKS blocks, pos_embed for a FILE_GRID x FILE_GRID grid (+ CLS), fp16."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: (torch.randn(*shape, generator=g) * 0.2).half()  # noqa: E731
    w = VIT_WIDTH
    state = {"cls_token": r(1, 1, w), "pos_embed": r(1, FILE_GRID * FILE_GRID + 1, w),
             "patch_embed.proj.weight": r(w, 3, PATCH, PATCH), "patch_embed.proj.bias": r(w)}
    for b in range(FILE_BLOCKS):
        p = f"blocks.{b}."
        state.update({p + "norm1.weight": 1 + r(w), p + "norm1.bias": r(w), p + "attn.qkv.weight": r(3 * w, w),
                      p + "attn.q_bias": r(w), p + "attn.v_bias": r(w), p + "attn.proj.weight": r(w, w),
                      p + "attn.proj.bias": r(w), p + "norm2.weight": 1 + r(w), p + "norm2.bias": r(w),
                      p + "mlp.fc1.weight": r(VIT_HIDDEN, w), p + "mlp.fc1.bias": r(VIT_HIDDEN),
                      p + "mlp.fc2.weight": r(w, VIT_HIDDEN), p + "mlp.fc2.bias": r(w)})
    return state


def lora_key(layer: int, proj: str, half: str, default: bool = False) -> str:
    return (f"llama_model.base_model.model.model.layers.{layer}.self_attn.{proj}.lora_{half}"
            f"{'.default' if default else ''}.weight")


def checkpoint_model(seed: int = 1, default: bool = False) -> dict[str, torch.Tensor]:
    """The checkpoint's ``model`` entry: llama_proj and LoRA pairs (B nonzero, so merging shows)."""
    g = torch.Generator().manual_seed(seed)
    state = {"llama_proj.weight": torch.randn(LM_WIDTH, 4 * VIT_WIDTH, generator=g) * 0.1,
             "llama_proj.bias": torch.randn(LM_WIDTH, generator=g) * 0.1}
    for layer in range(LM_LAYERS):
        for proj in ("q_proj", "v_proj"):
            state[lora_key(layer, proj, "A", default)] = torch.randn(LORA_R, LM_WIDTH, generator=g) * 0.1
            state[lora_key(layer, proj, "B", default)] = torch.randn(LM_WIDTH, LORA_R, generator=g) * 0.1
    return state


def save_checkpoint(path: Path, model: dict) -> Path:
    torch.save({"model": model, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0]}]},
                "config": {"model": {"arch": "minigpt_v2", "lora_r": 64, "lora_alpha": 16}}, "epoch": 1}, path)
    return path


def write_lm(path: Path, seed: int = 2) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer()
    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=LM_WIDTH, intermediate_size=64, num_hidden_layers=LM_LAYERS,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=False)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_pieces(root: Path, default: bool = False) -> dict[str, Path]:
    """The three pieces under ``root``: {"lm", "vit", "checkpoint"}."""
    root.mkdir(parents=True, exist_ok=True)
    torch.save(vit_state(), root / "eva_vit_g.pth")
    return {"lm": write_lm(root / "llama"), "vit": root / "eva_vit_g.pth",
            "checkpoint": save_checkpoint(root / "checkpoint_stage2.pth", checkpoint_model(default=default))}


def model_section(pieces: dict[str, Path], **extra) -> dict:
    """The ``model:`` section that loads the pieces at the tiny sizes."""
    return {"name": "minigpt-v2", "lm_path": str(pieces["lm"]), "vit_path": str(pieces["vit"]),
            "checkpoint_path": str(pieces["checkpoint"]), "image_size": IMAGE_SIZE, "vit_depth": VIT_DEPTH,
            "vit_heads": VIT_HEADS, "dtype": "fp32", **extra}
