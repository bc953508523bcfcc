"""LLaVA's wrapper (``LlavaVLM``).

``LlavaVLM`` implements ``coin.models.backbone.VLM`` (and the optional ``SharesPrefix`` and
``CachesVision``) for the LLaVA family: llava-hf's ``LlavaForConditionalGeneration``, which
the built-in tiny model also is. The text follows a ``coin.models.conversation``
format: ``vicuna_v1`` for LLaVA-1.5 (``{system} USER: <image>\\n{text} ASSISTANT:``, the answer
`` {answer}</s>``), tokenised whole as LLaVA's ``preprocess_v1`` does (``coin.models.llava.encode``);
``plain`` (no system line) for the tiny model, whose prompt and answers are tokenised
separately and joined. Either way the labels cover exactly the answer tokens and each EOS, and
generation sees exactly the training prompt. A training sequence longer than ``max_length`` is
cut at the end, as LLaVA cuts at its ``model_max_length``, and counted in ``truncated``.

A text-only sample (``image`` None) is written as LLaVA writes one: no ``<image>\\n`` line in the
first user turn, so no image tokens and no pixels; a batch may mix both kinds, its
``pixel_values`` holding the images of the samples that have one, in order (the model fills the
image tokens in order).
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import torch
from PIL import Image

from coin.data.sample import Sample  # its home is coin.data; `from coin.models.llava.wrapper import Sample` keeps working
# the input helpers' homes are coin.models.images, .sequences and .modes; importable from here as before
from coin.models.images import (DEFAULT_IMAGE_CACHE_MB, ImageError, PixelCache, centre_crop,  # noqa: F401
                                expand_to_square, load_image, pad_colour)
from coin.models.llava.encode import encode_conversation, encode_with_image
from coin.models.modes import generating, no_grad_when_frozen  # noqa: F401
from coin.models.sequences import resolve_max_length, right_pad, truncate  # noqa: F401

DEFAULT_VISION_CACHE_MB = 2048  # per process, host memory; LLaVA-1.5: 576x1024 features, 1.2 MB an image in bf16


class LlavaVLM:
    """A conversation format over a ``LlavaForConditionalGeneration`` and its processor.

    ``conversation``: a ``coin.models.conversation`` name ("vicuna_v1" for LLaVA-1.5, "plain" for
    the tiny model); ``max_length``: training sequences are cut to it (None: never);
    ``image_cache_mb``: the bound of the preprocessed-image cache. The frozen vision tower runs
    without autograd (``no_grad_when_frozen``).
    """

    # every linear layer of the LM's decoder blocks; not lm_head, not the vision tower
    lora_target = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
    full_train = ["multi_modal_projector"]
    pad_to_square = True  # LLaVA-1.5 pads images to a square (its image_aspect_ratio "pad")
    decoding = "coin"  # or "hf" (model.generate); see coin/models/decode.py
    share_prefix = False  # questions on one image prefill their shared prefix once (the engine turns it on)
    # test images (coin.tasks.image_modes): pad (coin's default), paper (the original's crop for ScienceQA, ImageNet,
    # Grounding and VQAv2) or crop; the engine sets it from eval.image_mode. Training always pads
    eval_image_mode = "pad"
    vision_cache = None  # a VisionFeatureCache once enable_vision_cache is called

    def __init__(self, model, processor, conversation: str = "plain", max_length: int | None = None,
                 image_cache_mb: int = DEFAULT_IMAGE_CACHE_MB) -> None:
        from coin.models.conversation import CONVERSATIONS

        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.conversation = CONVERSATIONS.get(conversation)
        self.max_length = max_length  # None: no limit
        self.truncated: set[str] = set()  # ids of the training samples cut to max_length
        cfg = model.config
        vision = cfg.vision_config
        n = (vision.image_size // vision.patch_size) ** 2
        if getattr(cfg, "vision_feature_select_strategy", "default") == "full":
            n += 1
        self.num_image_tokens = n
        self.image_token = "<image>"
        tower = model.model.vision_tower
        self._pixel_cache = PixelCache(image_cache_mb * 2**20, next(tower.parameters()).dtype)
        # test images prepared ahead (prefetch), by key: (which prefetch made it, pixels); at most two batches'
        self._prefetched: dict[str, tuple[int, torch.Tensor]] = {}
        self._prefetches = 0
        self._prefetch_lock = threading.Lock()
        no_grad_when_frozen(tower)

    def limit_pixel_cache(self, max_bytes: int) -> None:
        """Keep at most ``max_bytes`` of preprocessed images from now on (0: none; a loader worker's copy)."""
        self._pixel_cache.max_bytes = max_bytes

    # ------------------------------------------------------------------ inputs
    def prompt_text(self, prompt: str, image: bool = True) -> str:
        """The chat-formatted prompt, with the image placeholder expanded to its tokens (``image``
        False: a text-only prompt, no image line)."""
        return self.conversation.first_prompt(f"{self.image_token * self.num_image_tokens}\n{prompt}" if image
                                              else prompt)

    def first_question(self, s: Sample) -> str:
        """The first user turn's text: ``<image>\\n`` and the prompt, or the prompt alone for a text-only sample."""
        return s.prompt if s.image is None else f"{self.image_token}\n{s.prompt}"

    def pixel_inputs(self, samples: list[Sample], evaluating: bool = False) -> dict[str, torch.Tensor]:
        """``pixel_values`` of the samples that have an image, in order; empty when none has."""
        imaged = [s for s in samples if s.image is not None]
        return {"pixel_values": self.pixels(imaged, evaluating)} if imaged else {}

    def image_step(self, s: Sample, evaluating: bool = False) -> str:
        """``pad`` or ``crop`` for ``s``'s image: training pads; evaluation follows ``eval_image_mode``."""
        from coin.tasks.image_modes import eval_image_step

        return eval_image_step(s.task, self.eval_image_mode) if evaluating else "pad"

    def preprocess(self, img: Image.Image, step: str = "pad") -> Image.Image:
        """The image handed to the processor: padded to a square (LLaVA-1.5's ``pad``) or centre-cropped."""
        if step == "crop":
            return centre_crop(img, self.processor.image_processor)
        return expand_to_square(img, self.processor.image_processor) if self.pad_to_square else img

    def _pixel_key(self, s: Sample, step: str) -> str:
        return s.image if step == "pad" else f"{s.image}\0{step}"  # one image, both ways: two entries

    def _pixel_values(self, s: Sample, step: str) -> torch.Tensor:
        img = self.preprocess(load_image(s.image, s.id), step)
        return self.processor.image_processor(images=[img], return_tensors="pt")["pixel_values"][0]

    def pixels(self, samples: list[Sample], evaluating: bool = False) -> torch.Tensor:
        """Pixel values for the samples' images (preprocessed once, then cached); every sample has one.
        ``evaluating``: test images, padded or cropped by ``eval_image_mode`` (training always pads)."""
        out = []
        for s in samples:
            step = self.image_step(s, evaluating)
            key = self._pixel_key(s, step)
            px = self._pixel_cache.get(key)
            if px is None:
                with self._prefetch_lock:
                    px = self._prefetched.pop(key, (None, None))[1]
                if px is None:
                    px = self._pixel_values(s, step)
                px = self._pixel_cache.put(key, px)
            out.append(px)
        return torch.stack(out)

    def prefetch(self, samples: list[Sample]) -> None:
        """Decode and preprocess the test images of ``samples`` ahead of their batch (the evaluation runs
        this in a thread while the model answers the batch before): ``pixels`` then takes them, whether
        or not the bounded cache has room. The values are ``pixels``' own, so the answers are the same."""
        ready: dict[str, torch.Tensor] = {}
        for s in samples:
            if s.image is None or self._features_cached(s):
                continue
            step = self.image_step(s, evaluating=True)
            key = self._pixel_key(s, step)
            if key not in ready and self._pixel_cache.get(key) is None:
                ready[key] = self._pixel_values(s, step)
        with self._prefetch_lock:
            self._prefetches += 1
            n = self._prefetches
            # the batch being answered may still take its own; anything older was not needed after all
            self._prefetched = {k: v for k, v in self._prefetched.items() if v[0] >= n - 1}
            self._prefetched.update({k: (n, v) for k, v in ready.items()})

    def _features_cached(self, s: Sample) -> bool:
        """Whether the vision cache already holds ``s``'s image features (then its pixels are not read)."""
        cache = self.vision_cache
        if cache is None:
            return False
        try:
            step = self.image_step(s, evaluating=True)
            return cache.content_key(s.image) + ("" if step == "pad" else f":{step}") in cache
        except (OSError, ValueError):
            return False

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _image_ids(self) -> list[int]:
        return [self.tokenizer.convert_tokens_to_ids(self.image_token)] * self.num_image_tokens

    def _sequences(self, samples: list[Sample]) -> list[tuple[list[int], list[int], int]]:
        """Each sample's uncut (token ids, labels, prompt length): labels only on the answers and each EOS."""
        if self.conversation.whole:  # LLaVA's preprocess_v1: the conversation tokenised as one string
            return [encode_conversation(self.tokenizer, self.conversation,
                                        [(self.first_question(s), s.answer or ""), *s.turns],
                                        self._image_ids(), self.image_token, s.id) for s in samples]
        eos = self.tokenizer.eos_token_id
        conv = self.conversation
        prompts = self.tokenizer([self.prompt_text(s.prompt, s.image is not None) for s in samples],
                                 add_special_tokens=False)["input_ids"]
        out = []
        for s, prompt in zip(samples, prompts):
            p = [self.tokenizer.bos_token_id] + prompt
            a = self._encode(conv.answer(s.answer or "")) + [eos]
            x, y = p + a, [-100] * len(p) + a
            for q, ans in s.turns:
                p2 = self._encode(conv.turn(q))
                a = self._encode(conv.answer(ans)) + [eos]
                x, y = x + p2 + a, y + [-100] * len(p2) + a
            out.append((x, y, len(p)))
        return out

    def truncated_ids(self, samples: list[Sample], chunk: int = 512) -> list[str]:
        """Ids of the samples whose training sequence ``max_length`` cuts (text only: no image is read).

        The engine counts them for the stage log here, in its own process: ``train_batch`` may
        run in loader workers, whose ``truncated`` sets it never sees.
        """
        if self.max_length is None:
            return []
        return [s.id for k in range(0, len(samples), chunk)
                for s, (x, _, _) in zip(samples[k : k + chunk], self._sequences(samples[k : k + chunk]))
                if len(x) > self.max_length]

    def train_batch(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Right-padded inputs with labels only on the answer tokens (and each end of turn), each
        row cut to ``max_length`` (the cut samples' ids go to ``truncated``)."""
        ids, labels = [], []
        for s, (x, y, prompt_len) in zip(samples, self._sequences(samples)):
            x, y = truncate(s, x, y, prompt_len, self.max_length, self.truncated)
            ids.append(x)
            labels.append(y)
        batch = right_pad(ids, labels, self.tokenizer.pad_token_id)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                **self.pixel_inputs(samples), "labels": batch["labels"]}

    def _prompt_ids(self, samples: list[Sample]) -> list[list[int]]:
        if self.conversation.whole:  # as the start of the training sequence (coin.models.llava.encode)
            texts = [self.conversation.first_prompt(self.first_question(s)) for s in samples]
            return encode_with_image(self.tokenizer, texts, self._image_ids(), self.image_token)
        texts = [self.prompt_text(s.prompt, s.image is not None) for s in samples]  # one call: batched in Rust
        return [[self.tokenizer.bos_token_id] + x for x in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def generation_batch(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Left-padded prompts, so every row's next token sits in the last column."""
        from coin.models.decode import left_pad

        input_ids, mask = left_pad(self._prompt_ids(samples), self.tokenizer.pad_token_id)
        return {"input_ids": input_ids, "attention_mask": mask, **self.pixel_inputs(samples, evaluating=True)}

    # ------------------------------------------------------------------ generation
    def enable_vision_cache(self, max_mb: int = DEFAULT_VISION_CACHE_MB) -> None:
        """Keep the vision tower's features per image across calls (``coin.models.vision_cache``).

        Raises ``VisionCacheRefused`` when the tower has trainable parameters.
        """
        from coin.models.vision_cache import VisionFeatureCache, VisionCacheRefused, trainable_reason

        reason = trainable_reason(self._llava().vision_tower)
        if reason is not None:
            raise VisionCacheRefused(f"eval.cache_vision refused: {reason}")
        self.vision_cache = VisionFeatureCache(max_mb * 2**20)

    def _llava(self):
        """The ``LlavaModel`` inside ``model`` (a PEFT wrapper after the adapter is attached)."""
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return base.model

    def image_inputs(self, samples: list[Sample]) -> dict:
        """The prefill's image arguments: ``pixel_values``, or, with the vision cache, the projected
        features as ``mm_encoder_outputs`` (the tower skipped for every image seen before); for the
        samples that have an image, in order (none: empty)."""
        samples = [s for s in samples if s.image is not None]  # a text-only sample has no features to cache
        if not samples:
            return {}
        device = next(self.model.parameters()).device
        cache = self.vision_cache
        if cache is not None:
            from coin.models.vision_cache import VisionCacheRefused

            cfg = self._llava().config
            try:
                cache.check(self._llava().vision_tower, (cfg.vision_feature_layer, cfg.vision_feature_select_strategy))
            except VisionCacheRefused as e:  # the tower became trainable after the cache was switched on
                warnings.warn(f"{e}; features computed without the cache")
                cache = None
        if cache is None:
            return {"pixel_values": self.pixels(samples, evaluating=True).to(device)}
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        from coin.models.vision_cache import select_features

        steps = [self.image_step(s, evaluating=True) for s in samples]
        keys = [cache.content_key(s.image) + ("" if step == "pad" else f":{step}") for s, step in zip(samples, steps)]
        found = {k: cache.get(k) for k in dict.fromkeys(keys)}
        missing = [k for k, v in found.items() if v is None]
        if missing:
            first = {k: s for k, s in reversed(list(zip(keys, samples)))}
            feats = select_features(self._llava(), self.pixels([first[k] for k in missing], evaluating=True).to(device))
            for k, f in zip(missing, feats):
                found[k] = f
                cache.put(k, f.to("cpu"))  # host memory: the GPU's is the training's
        projected = self._llava().multi_modal_projector(torch.stack([found[k].to(device) for k in keys]))
        return {"mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=list(projected))}}

    @torch.inference_mode()
    def generate(self, samples: list[Sample], max_new_tokens: int) -> list[str]:
        """Greedy answers with the KV cache, stopping at the end of turn.

        ``decoding`` "coin" (the default) runs ``greedy_decode``: a preallocated KV cache and
        finished rows dropped from the batch; with ``share_prefix``, questions on the same image
        prefill their common prompt prefix once (``shared_prefix_decode``). "hf" runs
        ``model.generate`` as it comes, for comparison; all give the same answers.
        """
        if self.decoding == "coin":
            from coin.models.decode import greedy_decode, left_pad, plan_shared_prefix, shared_prefix_decode

            eos = [self.tokenizer.eos_token_id]
            ids = self._prompt_ids(samples)
            plan = None
            if self.share_prefix:
                image_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
                plan = plan_shared_prefix(ids, [s.image for s in samples], forbidden=image_id)
            with generating(self.model, {}):
                if plan is not None:
                    images = self.image_inputs([samples[i] for i in plan.first_row])
                    new = shared_prefix_decode(self.model, plan, images, self.tokenizer.pad_token_id,
                                               max_new_tokens, eos)
                else:
                    device = next(self.model.parameters()).device
                    input_ids, mask = left_pad(ids, self.tokenizer.pad_token_id, device)
                    batch = {"input_ids": input_ids, "attention_mask": mask, **self.image_inputs(samples)}
                    new = greedy_decode(self.model, batch, max_new_tokens, eos)
        elif self.decoding == "hf":
            with generating(self.model, self.generation_batch(samples)) as batch:
                out = self.model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    use_cache=True,
                    # coin pairs the processes' forwards itself (coin.engine.fsdp.lockstep); transformers' own per-step
                    # sync, on by default for a sharded model, would issue collectives that do not match
                    synced_gpus=False,
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
