"""The optimizer and the learning-rate schedule of a training run.

    optimizer = make_optimizer(train_config, model)
    lr = lr_at(train_config, step, progress)   # set on every parameter group before each step

Weight decay applies only to tensors with at least two dimensions (the weight matrices and the
embedding), never to biases: decaying the LSTM forget-gate bias, initialised to 1 so that the cell
remembers from the start, would pull it back towards forgetting (nanoGPT decays the same way).
"""

from __future__ import annotations

import math

import torch

from charrnn.core.config import TrainConfig


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Learning rate for `step` (0-based) at `progress` in [0, 1] of the run's budget.

    Linear warm-up over `warmup` steps, then constant or a cosine from lr down to lr * min_lr_frac
    across the rest of the budget, whatever the budget's kind (steps, epochs or minutes)."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    p = min(max(progress, 0.0), 1.0)
    low = cfg.lr * cfg.min_lr_frac
    return low + (cfg.lr - low) * 0.5 * (1.0 + math.cos(math.pi * p))


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """One group without decay when weight_decay is 0 (the layout of every run before decay was
    split); otherwise matrices (decayed) and vectors (biases: not decayed)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not weight_decay:
        return [{"params": params, "weight_decay": 0.0}]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    groups = parameter_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.Adam(groups, lr=cfg.lr)
