"""Gumbel-softmax sampling and temperature schedules (pure functions)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

SCHEDULES = ("exponential", "linear", "constant")


def gumbel_softmax(logits: Tensor, tau: float, *, hard: bool, generator: torch.Generator | None = None) -> Tensor:
    """One Gumbel-softmax sample over the last dimension.

    Args:
        logits: unnormalised log-probabilities.
        tau: temperature (> 0); lower is closer to one-hot.
        hard: straight-through: the forward value is one-hot, the gradient is
            that of the soft sample.
        generator: torch RNG for reproducible noise.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    g = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-10)))
    soft = torch.softmax((logits + g) / tau, dim=-1)
    if not hard:
        return soft
    one_hot = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    return one_hot - soft.detach() + soft


def tau(step: int, total: int, *, schedule: str = "exponential", tau0: float = 5.0, tau_min: float = 0.2) -> float:
    """Gumbel temperature at ``step`` of ``total``: ``tau0`` at step 0, ``tau_min`` at the last step.

    ``exponential``: ``tau0·(tau_min/tau0)^(step/(total-1))`` (FBNet);
    ``linear``: straight line between the two; ``constant``: always ``tau0``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: unknown {schedule!r}; known: {', '.join(SCHEDULES)}")
    if schedule == "constant" or total <= 1:
        return tau0
    frac = min(max(step / (total - 1), 0.0), 1.0)
    if schedule == "exponential":
        return tau0 * math.exp(frac * math.log(tau_min / tau0))
    return tau0 + frac * (tau_min - tau0)
