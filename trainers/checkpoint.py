"""Optimizer state in a checkpoint: moments as safetensors tensors, the rest as JSON (no pickle).

One copy of the rule for every resumable loop (:mod:`trainers.search`, :mod:`trainers.sandwich`):
:func:`optimizer_tensors` flattens an optimizer's state into tensors named ``{prefix}.{param index}.{key}``
plus a JSON-able description; :func:`restore_optimizer` rebuilds the state from both (torch moves each
tensor to its parameter's device).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


def optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, meta)`` of ``opt``'s state: tensors named ``{prefix}.{i}.{key}``, meta the param groups and keys."""
    sd = opt.state_dict()
    tensors = {f"{prefix}.{idx}.{k}": v if isinstance(v, Tensor) else torch.tensor(v)
               for idx, st in sd["state"].items() for k, v in st.items()}
    meta = {"param_groups": sd["param_groups"], "state": {str(i): sorted(s) for i, s in sd["state"].items()}}
    return tensors, meta


def restore_optimizer(opt: torch.optim.Optimizer, prefix: str, meta: Mapping[str, Any],
                      tensors: Mapping[str, Tensor]) -> None:
    """Load into ``opt`` what :func:`optimizer_tensors` wrote under ``prefix``."""
    state = {int(i): {k: tensors[f"{prefix}.{i}.{k}"] for k in keys} for i, keys in meta["state"].items()}
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
