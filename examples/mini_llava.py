"""mini-llava: a tiny random-weight LLaVA written to model.folder, then loaded from it (a plugin backbone)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coin.models.backbone import BACKBONES, Backbone, WeightPath

SPECIAL = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]


@dataclass
class MiniLlavaOptions:
    folder: str | None = None  # where the random weights are written, then loaded from
    width: int = 32  # the language model's hidden size
    seed: int = 0  # the weights' seed

    def check(self) -> list[str]:
        problems = [] if self.folder else ["folder is required (where the weights are written)"]
        if self.width < 8 or self.width % 4:
            problems.append(f"width must be a multiple of 4 and >= 8, got {self.width}")
        return problems


def write(options: MiniLlavaOptions, path: Path) -> None:
    """A byte-level BPE tokenizer, a CLIP-style tower on 64x64 images and a one-layer Llama, saved."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, PreTrainedTokenizerFast)
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(["What is in the image? Answer with a word. a red circle [0.25, 0.5]"] * 8,
                            trainer=trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=64, patch_size=16, projection_dim=16)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=options.width, intermediate_size=2 * options.width,
                       num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                       tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                         image_seq_length=16, vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(options.seed)
    LlavaForConditionalGeneration(config).save_pretrained(path)
    pixels = CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    LlavaProcessor(image_processor=pixels, tokenizer=tok, patch_size=16, vision_feature_select_strategy="default",
                   num_additional_image_tokens=1).save_pretrained(path)


@BACKBONES.register
class MiniLlava(Backbone):
    """A tiny random-weight LLaVA written to model.folder, then loaded from it."""

    name = "mini-llava"

    Options = MiniLlavaOptions

    @classmethod
    def prepare(cls, cfg, log=print, own=False) -> None:
        path = Path(cfg.options.folder)
        if not (path / "config.json").is_file():
            log(f"writing a random mini LLaVA to {path}")
            write(cfg.options, path)

    @classmethod
    def load(cls, cfg, log=print, progress=True):
        from transformers import LlavaForConditionalGeneration, LlavaProcessor

        from coin.models.llava.wrapper import LlavaVLM

        cls.prepare(cfg, log)
        path = cfg.options.folder
        return LlavaVLM(LlavaForConditionalGeneration.from_pretrained(path), LlavaProcessor.from_pretrained(path),
                        max_length=cfg.max_length)

    @classmethod
    def weights(cls, cfg) -> list[WeightPath]:
        return [WeightPath("model.folder", cfg.options.folder)]

    @classmethod
    def summary(cls, cfg) -> str:
        return f"{cfg.name} (width {cfg.options.width}, seed {cfg.options.seed})"
