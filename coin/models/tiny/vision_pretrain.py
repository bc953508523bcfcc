"""Stage 1 of the tiny base: teach the vision tower to see, with direct labels.

Real LLaVA starts from a CLIP tower that has seen 400M image-text pairs; ours starts from
random weights and learns to see only through the LM's loss, which is slow. So, as a
stand-in for CLIP's pretraining, the tower first learns to predict each grid cell's shape,
colour and size and the image's word, book cover and view (linear heads on its patch
tokens). The heads are then thrown away; the tower keeps what it learned.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from coin.benchmarks.synth.generator import world
from coin.models.tiny.fit import fit

if TYPE_CHECKING:
    from coin.models.llava.wrapper import LlavaVLM


class _Heads(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({k: nn.Linear(width, len(v)) for k, v in world.LABEL_SPACES.items()})

    def forward(self, tokens: torch.Tensor, grid: int) -> dict[str, torch.Tensor]:
        b, n, d = tokens.shape
        g = tokens.reshape(b, grid, grid, d)
        half = grid // 2  # the 2x2 cells of the synthetic world, in POSITIONS order
        cells = torch.stack([g[:, :half, :half], g[:, :half, half:], g[:, half:, :half], g[:, half:, half:]], 1)
        cells = cells.reshape(b, 4, -1, d).mean(2)
        pooled = tokens.mean(1)
        return {k: h(cells) if k in world.CELL_LABELS else h(pooled) for k, h in self.heads.items()}


def pretrain_vision(vlm: LlavaVLM, samples: list, labels: list[dict], steps: int, batch_size: int, lr: float, seed: int,
                    progress: bool = True, checkpoint: Path | None = None, log=None,
                    trace: list[float] | None = None, stop: int | None = None) -> float:
    """Train ``vlm``'s vision tower on scene labels for ``steps``; returns the final loss."""
    tower = vlm.model.model.vision_tower
    cfg = vlm.model.config.vision_config
    grid = cfg.image_size // cfg.patch_size
    heads = _Heads(cfg.hidden_size)
    targets = {k: torch.tensor([lab[k] for lab in labels]) for k in world.LABEL_SPACES}

    def loss_of(idx: list[int]) -> torch.Tensor:
        pixels = vlm.pixels([samples[i] for i in idx])
        tokens = tower(pixels).last_hidden_state[:, 1:]  # drop CLS, as LLaVA's "default" strategy does
        logits = heads(tokens, grid)
        return sum(nn.functional.cross_entropy(logits[k].reshape(-1, logits[k].shape[-1]), targets[k][idx].reshape(-1))
                   for k in logits)

    tower.train()
    return fit(list(tower.parameters()) + list(heads.parameters()), loss_of, len(samples), steps=steps,
               batch_size=batch_size, lr=lr, warmup=steps // 20, seed=seed, desc="pretrain vision", progress=progress,
               checkpoint=checkpoint, log=log, trace=trace, stop=stop)
