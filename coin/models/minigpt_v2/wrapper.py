"""MiniGPT-v2's wrapper (``MiniGPTv2VLM``): its prompt, its images, batches and greedy answers.

The text is MiniGPT-v2's Llama-2-chat wrapping: ``<s>[INST] <Img>`` + the image's 256 LM tokens +
`` </Img> {question} [/INST]``, then the answer and ``</s>``. As MiniGPT-v2 does, the pieces
around the image are tokenised separately (each without special tokens, one BOS first), and so
is the answer, so the labels cover exactly the answer and its ``</s>``. A further turn of a
multi-turn sample is ``<s>[INST] {question} [/INST]`` after the previous ``</s>`` (Llama-2-chat's
turn format; CoIN's tasks have one turn). A text-only sample (``image`` None) is
``<s>[INST] {question} [/INST]``, without the ``<Img>`` span and its image tokens, and a batch
may mix both kinds (``pixel_values`` holds the images of the samples that have one).

Two prompt formats (``model.prompt``):

- ``coin`` (default): as CoIN trained and evaluated MiniGPT-v2: no task identifier, and CoIN's
  own box strings (``[0.12, 0.34, 0.56, 0.78]``, normalised to the image padded to a square)
  read and written as they are;
- ``native``: MiniGPT-v2's own: a task identifier before the question (``[refer]`` for box
  answers, ``[vqa]`` for every other task) and boxes as ``{<x1><y1><x2><y2>}``, integers on a
  0-100 grid of the image as it is (MiniGPT-v2 does not pad). Training answers are converted
  to it and generated boxes back to CoIN's format before scoring (``coin_to_native``,
  ``native_to_coin``), using each image's own size.

Images are resized to ``image_size`` x ``image_size`` (bicubic, no crop, no padding: CoIN's
boxes are nevertheless normalised to the padded square, as CoIN ran it) and normalised with
CLIP's mean and std. Answers are greedy (``coin.models.decode.greedy_decode``, positions
from the attention mask, so a batch gives each row's batch-size-1 answer).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from coin.data.images import open_image  # the pixel limit, data.max_image_pixels
from coin.data.sample import Sample
from coin.models.images import PixelCache, load_image
from coin.models.minigpt_v2.parts import CLIP_MEAN, CLIP_STD
from coin.models.modes import generating, no_grad_when_frozen
from coin.models.sequences import SequenceBatches

GRID = 100  # MiniGPT-v2's box grid


# ---------------------------------------------------------------------------- boxes
def _padding(width: float, height: float) -> tuple[float, float, float]:
    """The padded square's side and the image's offsets inside it (CoIN's ``square_box``)."""
    side = max(width, height)
    return side, (side - width) / 2, (side - height) / 2


def coin_to_native(answer: str, width: int, height: int) -> str | None:
    """CoIN's ``[x1, y1, x2, y2]`` (fractions of the padded square) as MiniGPT-v2's ``{<x1><y1><x2><y2>}``
    (integers on a 0-100 grid of the unpadded image); None when ``answer`` holds no box."""
    from coin.scoring.parse import parse_box

    box = parse_box(answer)
    if box is None:
        return None
    side, dx, dy = _padding(width, height)
    values = [(box[k] * side - (dx if k % 2 == 0 else dy)) / (width if k % 2 == 0 else height) for k in range(4)]
    return "{" + "".join(f"<{min(max(round(v * GRID), 0), GRID)}>" for v in values) + "}"


def native_to_coin(output: str, width: int, height: int) -> str | None:
    """A generated ``{<x1><y1><x2><y2>}`` (or any four numbers) as CoIN's ``[x1, y1, x2, y2]`` with 2
    decimals, fractions of the padded square; None when ``output`` holds no box."""
    from coin.scoring.parse import parse_box

    box = parse_box(output.replace("<", " ").replace(">", " "))
    if box is None:
        return None
    side, dx, dy = _padding(width, height)
    values = [(box[k] / GRID * (width if k % 2 == 0 else height) + (dx if k % 2 == 0 else dy)) / side
              for k in range(4)]
    return "[" + ", ".join(f"{min(max(v, 0.0), 1.0):.2f}" for v in values) + "]"


def _is_box_task(task: str) -> bool:
    from coin.tasks import TASKS

    return task in TASKS and TASKS.get(task).answer_form == "box"


def image_size_of(path: str, record_id: str) -> tuple[int, int]:
    """(width, height) from the file's header."""
    try:
        with open_image(path) as im:
            return im.size
    except Exception as e:
        raise ValueError(f"record {record_id}: cannot read the size of image {path} ({e})") from None


# ---------------------------------------------------------------------------- the wrapper
class MiniGPTv2Processor:
    """The tokenizer and MiniGPT-v2's image transform (resize to a square, CLIP mean/std)."""

    def __init__(self, tokenizer, image_size: int) -> None:
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.image_mean, self.image_std = CLIP_MEAN, CLIP_STD

    def pixels(self, image: Image.Image) -> torch.Tensor:
        img = image.convert("RGB").resize((self.image_size, self.image_size), Image.BICUBIC)
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(self.image_size, self.image_size, 3)
        x = x.permute(2, 0, 1).float() / 255.0
        return (x - torch.tensor(self.image_mean)[:, None, None]) / torch.tensor(self.image_std)[:, None, None]

    def save_pretrained(self, path: str | Path) -> None:
        self.tokenizer.save_pretrained(path)


class MiniGPTv2VLM(SequenceBatches):
    """``coin.models.backbone.VLM`` over ``MiniGPTv2`` (``coin.models.minigpt_v2.parts``).

    ``identifiers`` and ``native_boxes``: the prompt format (see the module doc); ``max_length``:
    training sequences are cut to it (None: never); ``image_cache_mb``: preprocessed images kept.
    """

    lora_target = r"llama_model\.model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"  # LoRA on q and v, as MiniGPT-v2
    full_train = ["llama_proj"]

    def __init__(self, model, tokenizer, identifiers: bool = False, native_boxes: bool = False,
                 max_length: int | None = None, image_cache_mb: int = 2048) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.processor = MiniGPTv2Processor(tokenizer, model.visual_encoder.image_size)
        self.identifiers, self.native_boxes = identifiers, native_boxes
        self.max_length = max_length
        self.truncated: set[str] = set()
        self.num_image_tokens = model.image_tokens
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pixel_cache = PixelCache(image_cache_mb * 2**20, model.visual_encoder.cls_token.dtype)
        no_grad_when_frozen(model.visual_encoder)

    def limit_pixel_cache(self, max_bytes: int) -> None:
        """Keep at most ``max_bytes`` of preprocessed images from now on (0: none; a loader worker's copy)."""
        self._pixel_cache.max_bytes = max_bytes

    # ------------------------------------------------------------------ text
    def question(self, s: Sample) -> str:
        """The question as the prompt format writes it (a task identifier first in ``native``)."""
        if not self.identifiers:
            return s.prompt
        return ("[refer] " if _is_box_task(s.task) else "[vqa] ") + s.prompt

    def answer_text(self, s: Sample, answer: str) -> str:
        """A training answer in the prompt format's box notation (a text-only sample's as it is: no image
        to place a box on)."""
        if self.native_boxes and _is_box_task(s.task) and s.image is not None:
            native = coin_to_native(answer, *image_size_of(s.image, s.id))
            if native is None:
                raise ValueError(f"record {s.id}: box answer {answer!r} holds no four numbers")
            return native
        return answer

    def output_text(self, s: Sample, output: str) -> str:
        """A generated answer in CoIN's notation (a native box converted back; anything else as it is)."""
        if self.native_boxes and _is_box_task(s.task) and s.image is not None:
            return native_to_coin(output, *image_size_of(s.image, s.id)) or output
        return output

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _prompt(self, s: Sample) -> tuple[list[int], list[bool]]:
        """``<s>[INST] <Img>`` + image tokens + ``</Img> {q} [/INST]``: ids and which are the image's
        (a text-only sample: ``<s>[INST] {q} [/INST]``, none)."""
        if s.image is None:
            ids = [self.tokenizer.bos_token_id] + self._encode(f"[INST] {self.question(s)} [/INST]")
            return ids, [False] * len(ids)
        head = [self.tokenizer.bos_token_id] + self._encode("[INST] <Img>")
        tail = self._encode(f"</Img> {self.question(s)} [/INST]")
        ids = head + [self.pad_id] * self.num_image_tokens + tail
        return ids, [False] * len(head) + [True] * self.num_image_tokens + [False] * len(tail)

    def _sequence(self, s: Sample) -> tuple[list[int], list[int], int, list[bool]]:
        """(ids, labels, prompt length, image positions) of a training sample, uncut."""
        ids, image = self._prompt(s)
        prompt_len = len(ids)
        eos = self.tokenizer.eos_token_id
        answer = self._encode(self.answer_text(s, s.answer or "")) + [eos]
        ids, labels = ids + answer, [-100] * prompt_len + answer
        for q, a in s.turns:
            p = [self.tokenizer.bos_token_id] + self._encode(f"[INST] {q} [/INST]")
            a_ids = self._encode(self.answer_text(s, a)) + [eos]
            ids, labels = ids + p + a_ids, labels + [-100] * len(p) + a_ids
        return ids, labels, prompt_len, image + [False] * (len(ids) - len(image))

    def pixel_inputs(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """``pixel_values`` of the samples that have an image, in order; empty when none has."""
        imaged = [s for s in samples if s.image is not None]
        return {"pixel_values": self.pixels(imaged)} if imaged else {}

    def pixels(self, samples: list[Sample]) -> torch.Tensor:
        out = []
        for s in samples:
            px = self._pixel_cache.get(s.image)
            if px is None:
                px = self._pixel_cache.put(s.image, self.processor.pixels(load_image(s.image, s.id)))
            out.append(px)
        return torch.stack(out)

    def train_batch(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Right-padded inputs, ``image_mask`` where the image's features go, labels on the answers only."""
        rows = self.cut_sequences(samples)
        batch = self.padded(rows)
        image_mask = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
        for k, (_, _, image) in enumerate(rows):
            image_mask[k, : len(image)] = torch.tensor(image, dtype=torch.bool)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                **self.pixel_inputs(samples), "image_mask": image_mask, "labels": batch["labels"]}

    def generation_batch(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Left-padded prompts (every row's next token in the last column) with their images."""
        from coin.models.decode import left_pad

        prompts = [self._prompt(s) for s in samples]
        input_ids, mask = left_pad([ids for ids, _ in prompts], self.pad_id)
        image_mask = torch.zeros_like(mask, dtype=torch.bool)
        for k, (_, image) in enumerate(prompts):
            image_mask[k, mask.shape[1] - len(image):] = torch.tensor(image, dtype=torch.bool)
        return {"input_ids": input_ids, "attention_mask": mask, **self.pixel_inputs(samples),
                "image_mask": image_mask}

    @torch.inference_mode()
    def generate(self, samples: list[Sample], max_new_tokens: int) -> list[str]:
        """Greedy answers (KV cache, stopping at ``</s>``), in CoIN's box notation."""
        from coin.models.decode import greedy_decode

        with generating(self.model, self.generation_batch(samples)) as batch:
            new = greedy_decode(self.model, batch, max_new_tokens, [self.tokenizer.eos_token_id])
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [self.output_text(s, t.strip()) for s, t in zip(samples, texts)]

    # ------------------------------------------------------------------ persistence
    def save_base(self, path: str | Path) -> None:
        """The base model as the three pieces ``model.name: minigpt-v2`` loads back, in safetensors:
        ``llama/`` (the LM folder, released LoRA merged, and tokenizer), ``eva_vit_g.safetensors``
        (the ViT, its ``pos_embed`` already at ``image_size``) and ``minigpt_v2.safetensors``
        (``llama_proj``, ``ln_vision``; no LoRA left to merge)."""
        from safetensors.torch import save_file

        if hasattr(self.model, "get_base_model"):
            raise ValueError("save_base writes the base model: call it before an adapter is attached")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.llama_model.save_pretrained(path / "llama", safe_serialization=True)
        self.tokenizer.save_pretrained(path / "llama")
        plain = lambda m: {k: v.detach().contiguous() for k, v in m.state_dict().items()}  # noqa: E731
        save_file(plain(self.model.visual_encoder), str(path / "eva_vit_g.safetensors"))
        own = {f"{name}.{k}": v for name in ("llama_proj", "ln_vision")
               for k, v in plain(getattr(self.model, name)).items()}
        save_file(own, str(path / "minigpt_v2.safetensors"))
