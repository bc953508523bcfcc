"""The built-in backbones, one file each; importing this package registers them."""

from coin.models.backbones import hf, llava, llava_pretrain, minigpt_v2, qwen2_vl, qwen_vl_chat, tiny  # noqa: F401
