"""Adam's parameter groups and the learning-rate schedule of the training loop (:mod:`core.trainer`).

Both are pure: the groups are a function of the model, the learning rate a function of the step.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from core.config import LR_SCHEDULES


def parameter_groups(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Adam parameter groups of ``model``'s trainable parameters: one group at the base learning rate, and one more
    per learning-rate multiple that a submodule asks for in its ``lr_scales`` attribute (``{parameter name:
    multiple}``, e.g. :class:`~core.quantize.vq.VectorQuantizer`'s ``codebook_lr_scale``). Each group holds its
    ``lr_scale``; the training loop sets ``lr = base lr × lr_scale``. Multiples of 1 add no group, so a model
    without them has exactly one group (and the checkpoints of earlier runs load unchanged)."""
    scaled: dict[int, float] = {}
    for module in model.modules():
        for name, scale in getattr(module, "lr_scales", {}).items():
            param = getattr(module, name)
            if scale != 1.0 and param.requires_grad:
                scaled[id(param)] = float(scale)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in scaled], "lr_scale": 1.0}]
    for scale in sorted(set(scaled.values())):
        groups.append({"params": [p for p in model.parameters() if scaled.get(id(p)) == scale], "lr_scale": scale})
    return groups


def learning_rate(step: int, base_lr: float, warmup_steps: int = 0, schedule: str = "constant",
                  total_steps: int = 1) -> float:
    """Learning rate at ``step`` (0-based), a pure function of the step.

    Linear warm-up over ``warmup_steps``, then ``"constant"`` (the paper's setting) or ``"cosine"`` decay from
    ``base_lr`` to 0 at ``total_steps``.

    Raises:
        ValueError: for an unknown schedule.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {schedule!r}; known: {LR_SCHEDULES}")
    lr = base_lr
    if schedule == "cosine":
        progress = min(max(step - warmup_steps, 0) / max(total_steps - warmup_steps, 1), 1.0)
        lr = base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    if warmup_steps > 0:
        lr *= min(1.0, (step + 1) / warmup_steps)
    return lr


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group of ``optimizer`` (from :func:`parameter_groups`) ``lr × lr_scale``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
