"""Tiny random-weight instances of real Hugging Face backbones, saved as from_pretrained folders.

Nothing is downloaded: tokenizers are trained offline on CoIN-Synth text and weights are random.
Each builder writes a folder that ``from_pretrained`` (and so ``coin run`` with ``model.path``)
loads as it would a hub checkpoint: config, safetensors, tokenizer, processor, chat template.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
# the shape of Qwen2-VL-Instruct's template: a default system turn, <|im_start|>role\n...<|im_end|>\n,
# and an image as <|vision_start|><|image_pad|><|vision_end|>
QWEN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
IMAGE_SIZE = 64  # CoIN-Synth's
PATCH = 16  # 64x64 -> 4x4 patches -> 2x2 merged: 4 image tokens


def corpus(per_task: int = 12) -> list[str]:
    """Questions, instructions and answers of the CoIN-Synth tasks (for training tokenizers)."""
    from coin.benchmarks.synth.generator.makers import MAKERS
    from coin.tasks import get_task

    texts = ["system user assistant You are a helpful assistant.", "Describe the image."]
    for task, make in ((t, MAKERS.get(t)) for t in MAKERS):  # sorted by name
        rng = random.Random(f"tinyhf/{task}")
        texts.append(get_task(task).instruction)
        for _ in range(per_task):
            ex = make(rng)
            texts += [ex.question, ex.answer, ex.detail or ""]
    return texts


def qwen_tokenizer(vocab_size: int = 400):
    """A ``Qwen2Tokenizer`` (Qwen's pre-tokenizer, byte-level BPE) trained offline, with Qwen's special tokens."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=QWEN_SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    qwen = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, unk_token=None, bos_token=None,
                          eos_token="<|im_end|>", pad_token="<|endoftext|>")
    qwen.add_tokens([AddedToken(t, special=True) for t in QWEN_SPECIAL])
    qwen.chat_template = QWEN_TEMPLATE
    return qwen


def qwen2_vl_processor(tokenizer):
    """A ``Qwen2VLProcessor`` with a (PIL) Qwen2-VL image processor: a 64x64 image is 4 tokens.

    The torchvision-backed ``Qwen2VLImageProcessor`` and the video processor need torchvision,
    which the CPU test environment lacks; the PIL image processor saves as the same type.
    """
    from transformers import Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from coin.models.chat.wrapper import image_only

    image_processor = Qwen2VLImageProcessorPil(min_pixels=(IMAGE_SIZE // 2) ** 2, max_pixels=IMAGE_SIZE**2,
                                               patch_size=PATCH, merge_size=2, temporal_patch_size=2)
    return image_only(Qwen2VLProcessor)(image_processor=image_processor, tokenizer=tokenizer,
                                        chat_template=QWEN_TEMPLATE)


def qwen2_vl_model(tokenizer, seed: int = 0, hidden: int = 32, layers: int = 2):
    """A random ``Qwen2VLForConditionalGeneration``: one vision block of width 32, a 2-layer LM of width 32."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    heads = 2
    half = hidden // heads // 2  # rotary frequencies per head, split over (time, height, width)
    text = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=1,
                max_position_embeddings=1024, bos_token_id=None, eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": [half - 2 * (half // 3), half // 3, half // 3]})
    vision = dict(depth=1, embed_dim=32, hidden_size=hidden, num_heads=2, mlp_ratio=2, patch_size=PATCH,
                  spatial_merge_size=2, temporal_patch_size=2)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = None
    return model


def build_qwen2_vl(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny Qwen2-VL (model, tokenizer, processor, chat template) to ``folder``."""
    folder = Path(folder)
    tokenizer = qwen_tokenizer()
    processor = qwen2_vl_processor(tokenizer)
    qwen2_vl_model(tokenizer, seed).save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    processor.image_processor.save_pretrained(folder)  # preprocessor_config.json, as hub checkpoints have
    return folder


def build_llava(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny llava-hf ``LlavaForConditionalGeneration`` (coin.models.tiny.model's builders) to ``folder``."""
    from coin.models.conversation import VICUNA_V1_SYSTEM, VICUNA_V1_TEMPLATE
    from coin.models.tiny.model import TinyConfig, build_model, build_processor, train_tokenizer

    folder = Path(folder)
    cfg = TinyConfig(vocab_size=400, vision_width=32, vision_layers=1, vision_heads=2, lm_width=32, lm_layers=2,
                     lm_heads=2, lm_ffn=64)
    tokenizer = train_tokenizer(corpus() + ["USER: ASSISTANT:", VICUNA_V1_SYSTEM], cfg.vocab_size)
    build_model(cfg, tokenizer, seed).save_pretrained(folder, safe_serialization=True)
    processor = build_processor(tokenizer, cfg)
    processor.chat_template = tokenizer.chat_template = VICUNA_V1_TEMPLATE  # as LLaVA-1.5 (model.name llava) talks
    processor.save_pretrained(folder)
    return folder


def without_chat_template(src: str | Path, dst: str | Path) -> Path:
    """A copy of the model folder ``src`` with every chat template removed."""
    import shutil

    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst)
    for f in ("chat_template.jinja", "chat_template.json"):
        (dst / f).unlink(missing_ok=True)
    shutil.rmtree(dst / "additional_chat_templates", ignore_errors=True)
    for f in ("tokenizer_config.json", "processor_config.json"):
        path = dst / f
        if path.is_file():
            data = json.loads(path.read_text())
            data.pop("chat_template", None)
            path.write_text(json.dumps(data, indent=2))
    return dst
