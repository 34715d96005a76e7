"""Device placement of training: batches follow the model, bf16 autocast on CUDA only.

The device itself is resolved once per trial (:func:`nas.search.devices.trial_device`);
the modules are moved to it with ``.to(device)`` and everything here reads it back
from them, so a function that trains or evaluates a model needs no device argument.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Mapping

import torch
from torch import Tensor, nn


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (or buffer); the CPU when it has neither."""
    t = next(itertools.chain(module.parameters(), module.buffers()), None)
    return torch.device("cpu") if t is None else t.device


def to_device(batch: Mapping[str, Tensor], device: torch.device | str) -> dict[str, Tensor]:
    """Every tensor of ``batch`` on ``device``."""
    return {k: v.to(device) for k, v in batch.items()}


def train_autocast(device: torch.device | str, autocast: str):
    """The context a training step runs in: bf16 autocast when ``autocast == "bf16"`` and ``device`` is CUDA,
    else nothing (fp32)."""
    if autocast == "bf16" and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
