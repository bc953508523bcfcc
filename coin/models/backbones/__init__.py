"""The built-in backbones, one file each; importing this package registers them."""

from coin.models.backbones import hf, llava, llava_pretrain, qwen2_vl, tiny  # noqa: F401
