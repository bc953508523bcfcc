"""One small protocol over Hugging Face image-text-to-text models: batch, forward, generate.

``LlavaVLM`` implements it for the LLaVA family (llava-hf's ``LlavaForConditionalGeneration``,
which the built-in tiny model also is). The prompt is ``USER: <image>\\n{text} ASSISTANT:``
and the answer `` {answer}</s>``; prompt and answer are tokenised separately and joined, so
the labels cover exactly the answer tokens and generation sees exactly the training prompt.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from PIL import Image


@dataclass(frozen=True)
class Sample:
    """One model input: an image file, the full prompt text and (for training) the answer."""

    id: str
    task: str
    image: str  # absolute path
    prompt: str
    answer: str | None = None
    turns: tuple[tuple[str, str], ...] = ()  # further (question, answer) turns of a multi-turn conversation


class ImageError(ValueError):
    """An image that cannot be opened; the message names the file and the record."""


def load_image(path: str, record_id: str = "?") -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"record {record_id}: image {path} does not exist") from None
    except Exception as e:  # PIL raises several types for corrupt files
        raise ImageError(f"record {record_id}: image {path} cannot be read ({e})") from None


def expand_to_square(img: Image.Image, image_processor) -> Image.Image:
    """LLaVA-1.5's ``image_aspect_ratio: pad``: centre the image on a square of the mean colour.

    Without it, CLIP's processor centre-crops a non-square image, cutting off part of the
    scene (and CoIN's grounding boxes are normalised to the padded square). A square image
    is returned unchanged.
    """
    w, h = img.size
    if w == h:
        return img
    mean = getattr(image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
    side = max(w, h)
    square = Image.new(img.mode, (side, side), tuple(int(round(255 * m)) for m in mean))
    square.paste(img, ((side - w) // 2, (side - h) // 2))
    return square


@contextmanager
def generating(model, batch: dict[str, torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
    """``batch`` on the model's device, with the model in eval mode for the block (its mode restored after)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        yield {k: v.to(device) for k, v in batch.items()}
    finally:
        model.train(was_training)


class LlavaVLM:
    """The LLaVA-1.5 chat format over a ``LlavaForConditionalGeneration`` and its processor."""

    # every linear layer of the LM's decoder blocks; not lm_head, not the vision tower
    lora_target = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
    full_train = ["multi_modal_projector"]
    pad_to_square = True  # LLaVA-1.5 pads images to a square (its image_aspect_ratio "pad")
    decoding = "coin"  # or "hf" (model.generate); see coin/models/decode.py

    def __init__(self, model, processor, image_cache_size: int = 50_000) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        cfg = model.config
        vision = cfg.vision_config
        n = (vision.image_size // vision.patch_size) ** 2
        if getattr(cfg, "vision_feature_select_strategy", "default") == "full":
            n += 1
        self.num_image_tokens = n
        self.image_token = "<image>"
        self._pixel_cache: dict[str, torch.Tensor] = {}
        self._cache_size = image_cache_size

    # ------------------------------------------------------------------ inputs
    def prompt_text(self, prompt: str) -> str:
        """The chat-formatted prompt, with the image placeholder expanded to its tokens."""
        return f"USER: {self.image_token * self.num_image_tokens}\n{prompt} ASSISTANT:"

    def pixels(self, samples: list[Sample]) -> torch.Tensor:
        """Pixel values for the samples' images (preprocessed once, then cached)."""
        out = []
        for s in samples:
            px = self._pixel_cache.get(s.image)
            if px is None:
                img = load_image(s.image, s.id)
                if self.pad_to_square:
                    img = expand_to_square(img, self.processor.image_processor)
                px = self.processor.image_processor(images=[img], return_tensors="pt")["pixel_values"][0]
                if len(self._pixel_cache) < self._cache_size:
                    self._pixel_cache[s.image] = px
            out.append(px)
        return torch.stack(out)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def train_batch(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Right-padded inputs with labels only on the answer tokens (and each end of turn)."""
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        ids, labels = [], []
        for s in samples:
            p = [self.tokenizer.bos_token_id] + self._encode(self.prompt_text(s.prompt))
            a = self._encode(" " + (s.answer or "")) + [eos]
            x, y = p + a, [-100] * len(p) + a
            for q, ans in s.turns:
                p = self._encode(f"USER: {q} ASSISTANT:")
                a = self._encode(" " + ans) + [eos]
                x, y = x + p + a, y + [-100] * len(p) + a
            ids.append(x)
            labels.append(y)
        width = max(map(len, ids))
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        lab = torch.full((len(ids), width), -100, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for k, (x, y) in enumerate(zip(ids, labels)):
            input_ids[k, : len(x)] = torch.tensor(x)
            lab[k, : len(y)] = torch.tensor(y)
            mask[k, : len(x)] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "pixel_values": self.pixels(samples), "labels": lab}

    def generation_batch(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Left-padded prompts, so every row's next token sits in the last column."""
        pad = self.tokenizer.pad_token_id
        texts = [self.prompt_text(s.prompt) for s in samples]  # one call: the fast tokenizer batches in Rust
        ids = [[self.tokenizer.bos_token_id] + x for x in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        width = max(map(len, ids))
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for k, x in enumerate(ids):
            input_ids[k, width - len(x):] = torch.tensor(x)
            mask[k, width - len(x):] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "pixel_values": self.pixels(samples)}

    # ------------------------------------------------------------------ generation
    @torch.inference_mode()
    def generate(self, samples: list[Sample], max_new_tokens: int) -> list[str]:
        """Greedy answers with the KV cache, stopping at the end of turn.

        ``decoding`` "coin" (the default) runs ``greedy_decode``: a preallocated KV cache and
        finished rows dropped from the batch. "hf" runs ``model.generate`` as it comes, for
        comparison; both give the same answers.
        """
        with generating(self.model, self.generation_batch(samples)) as batch:
            if self.decoding == "coin":
                from coin.models.decode import greedy_decode  # imports transformers: not at module load

                new = greedy_decode(self.model, batch, max_new_tokens, [self.tokenizer.eos_token_id])
            elif self.decoding == "hf":
                out = self.model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    use_cache=True,
                    eos_token_id=self.tokenizer.eos_token_id,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
                new = out[:, batch["input_ids"].shape[1]:]
            else:
                raise ValueError(f"unknown decoding {self.decoding!r}; choices: coin, hf")
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    # ------------------------------------------------------------------ persistence
    def save_base(self, path: str | Path) -> None:
        """Save weights (safetensors), tokenizer and processor so ``from_pretrained`` reloads them."""
        self.model.save_pretrained(path, safe_serialization=True)
        self.processor.save_pretrained(path)
