"""What the GPU benchmarks share (bench_gpu.py, bench_fsdp.py, bench_eval_sharing.py): LLaVA-1.5's
architecture as a config, its special token ids, random batches built directly (no tokenizer or
image is read) and a device sync for timing. Its own module, so no benchmark imports another."""

from __future__ import annotations

import torch

IMAGE_TOKEN = 32000  # llava-hf's <image> id; 32001 is <pad>, the vocabulary is padded to 32064
PAD_TOKEN = 32001
BOS, EOS = 1, 2


def llava_config(small: bool = False):
    """LLaVA-1.5-7B's ``LlavaConfig`` (``small``: the same layout, tiny widths and depths)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    v = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)
    t = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
             num_key_value_heads=32)
    if small:
        v = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4)
        t = dict(hidden_size=128, intermediate_size=344, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4)
    vision = CLIPVisionConfig(**v, image_size=336, patch_size=14, num_channels=3, projection_dim=768,
                              hidden_act="quick_gelu", layer_norm_eps=1e-5)
    text = LlamaConfig(**t, vocab_size=32064, max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
                       hidden_act="silu", bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD_TOKEN,
                       tie_word_embeddings=False)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN, image_seq_length=576,
                       projector_hidden_act="gelu", vision_feature_select_strategy="default",
                       vision_feature_layer=-2, multimodal_projector_bias=True)


def train_batch(n: int, text: int, answer: int, image_tokens: int, device, dtype, gen: torch.Generator) -> dict:
    """``n`` right-sized sequences ``<s> USER: <image>*576 ... ASSISTANT: answer``, labels on the answer."""
    width = 1 + image_tokens + text
    ids = torch.randint(3, IMAGE_TOKEN, (n, width), generator=gen)
    ids[:, 0] = BOS
    ids[:, 1 : 1 + image_tokens] = IMAGE_TOKEN
    labels = torch.full_like(ids, -100)
    labels[:, -answer:] = ids[:, -answer:]
    pixels = torch.randn(n, 3, 336, 336, generator=gen)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "pixel_values": pixels.to(device, dtype), "labels": labels.to(device)}


def prompt_batch(n: int, text: int, image_tokens: int, device, dtype, gen: torch.Generator) -> dict:
    """``n`` prompts of mixed length (``text`` / 2 to 3 ``text`` / 2 text tokens after the image),
    left-padded as coin pads a generation batch, so padding costs what a real test set's does."""
    lengths = torch.randint(max(1, text // 2), text + text // 2 + 1, (n,), generator=gen).tolist()
    width = 1 + image_tokens + max(lengths)
    ids = torch.full((n, width), PAD_TOKEN, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for r, t in enumerate(lengths):
        row = torch.randint(3, IMAGE_TOKEN, (1 + image_tokens + t,), generator=gen)
        row[0] = BOS
        row[1 : 1 + image_tokens] = IMAGE_TOKEN
        ids[r, width - len(row) :] = row
        mask[r, width - len(row) :] = 1
    pixels = torch.randn(n, 3, 336, 336, generator=gen)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "pixel_values": pixels.to(device, dtype)}


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on a CPU), so a timer reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize()
