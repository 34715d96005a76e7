"""Device placement of training: batches follow the model, bf16 autocast where the device computes bf16 natively.

The device itself is resolved once per trial (:func:`nas.search.devices.trial_device`);
the modules are moved to it with ``.to(device)`` and everything here reads it back
from them, so a function that trains or evaluates a model needs no device argument.
"""

from __future__ import annotations

import contextlib
import functools
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


@functools.cache
def _cpu_isa() -> frozenset[str]:
    from nas.latency.device import device_info

    return frozenset(device_info()["isa"])


def bf16_native(device: torch.device | str, isa: frozenset[str] | None = None) -> bool:
    """Whether ``device`` runs bf16 matmuls natively, so that training under bf16 autocast pays: CUDA, or a
    CPU with AMX-BF16 tiles (``isa``: the CPU's flags, default this machine's).

    On the 2-core AMX Xeon (60ce96d48035) MiniLM's sandwich steps ran 1.69×, a shared-supernet trial's
    architecture steps 1.49× and its fine-tuning 1.60× faster under bf16 autocast; fine-tuned accuracy
    −0.04 pt on average (largest change 0.35 pt) over 6 paired trials, 5 of them deriving the same
    architecture (``experiments/reports/train_precision_60ce96d48035.md``). CPUs with AVX512-BF16 alone
    (not measured) and AVX2 CPUs train in fp32.

    Example:
        >>> bf16_native("cpu", frozenset({"avx2", "amx_bf16"})), bf16_native("cpu", frozenset({"avx2"}))
        (True, False)
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return True
    return kind == "cpu" and "amx_bf16" in (_cpu_isa() if isa is None else isa)


def train_dtype(device: torch.device | str, autocast: str) -> str:
    """``bf16`` when a training step on ``device`` runs under bf16 autocast (:func:`train_autocast`), else ``fp32``."""
    return "bf16" if autocast == "bf16" and bf16_native(device) else "fp32"


def train_autocast(device: torch.device | str, autocast: str):
    """The context a training step runs in: bf16 autocast when ``autocast == "bf16"`` and ``device`` computes bf16
    natively (:func:`bf16_native`: CUDA, AMX CPUs), else nothing (fp32)."""
    if train_dtype(device, autocast) == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
