"""The built-in tiny MLLM: a real ``LlavaForConditionalGeneration`` of about 5M parameters.

It is built from scratch (no weights are downloaded): a byte-level BPE tokenizer trained
offline with ``tokenizers`` on CoIN-Synth text, a CLIP-style vision tower on 64x64 images
with 16x16 patches (16 image tokens), a two-layer projector, and a Llama-style LM. Because
it is the very same class as llava-hf's LLaVA-1.5, everything the tiny model goes through
(processor, LoRA targets, generation, save/load) is the path the real 7B model takes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

from coin.benchmarks.synth.generator import world

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    " {% else %}ASSISTANT: {% for c in message['content'] %}{{ c['text'] }}{% endfor %}</s>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


@dataclass(frozen=True)
class TinyConfig:
    """Sizes of the tiny model; the defaults were measured to learn CoIN-Synth on 2 CPU cores."""

    vocab_size: int = 1024
    image_size: int = world.IMAGE_SIZE
    patch_size: int = 16
    vision_width: int = 192
    vision_layers: int = 4
    vision_heads: int = 4
    lm_width: int = 256
    lm_layers: int = 4
    lm_heads: int = 4
    lm_ffn: int = 768
    max_positions: int = 512

    def to_dict(self) -> dict:
        return asdict(self)


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts``; any string still encodes (bytes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(tokenizer, cfg: TinyConfig):
    """A real ``LlavaProcessor`` around the tokenizer and a PIL CLIP image processor."""
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": cfg.image_size},
        crop_size={"height": cfg.image_size, "width": cfg.image_size},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=cfg.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def build_model(cfg: TinyConfig, tokenizer, seed: int = 0):
    """A randomly initialised tiny ``LlavaForConditionalGeneration`` (deterministic for ``seed``)."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(
        hidden_size=cfg.vision_width,
        intermediate_size=cfg.vision_width * 4,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        projection_dim=cfg.vision_width,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.lm_width,
        intermediate_size=cfg.lm_ffn,
        num_hidden_layers=cfg.lm_layers,
        num_attention_heads=cfg.lm_heads,
        num_key_value_heads=cfg.lm_heads,
        max_position_embeddings=cfg.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(cfg.image_size // cfg.patch_size) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model
