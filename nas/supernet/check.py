"""Derive parity check: random subnets vs the supernet at their one-hot architectures."""

from __future__ import annotations

import random
import time
from typing import Any, TextIO

import torch

from nas.models.dims import synthetic_id_high
from nas.spaces.space import SearchSpace
from nas.spaces.summary import format_arch
from nas.supernet.derive import derive
from nas.supernet.supernet import Supernet

SHAPES = ((1, 8), (2, 32), (3, 77))  # (batch, sequence length); the last rows are padded


def check_derive(
    space: SearchSpace, *, samples: int, seed: int = 0, tolerance: float = 1e-4, log: TextIO | None = None
) -> dict[str, Any]:
    """Derive ``samples`` random subnets and compare each with the supernet on several shapes.

    Returns:
        ``{"space", "samples", "seed", "tolerance", "max_abs_diff", "ok", "subnets": [...]}``
        where each subnet row holds its summary, ``max_abs_diff``, ``params`` and ``mb``.
    """
    t0 = time.perf_counter()
    net = Supernet.build(space)
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    vocab = synthetic_id_high(space.dims.vocab_size)
    batches = []
    for b, t in SHAPES:
        t = min(t, space.dims.max_positions)
        ids = torch.randint(1, vocab, (b, t), generator=g)
        mask = torch.ones_like(ids)
        if b > 1:
            mask[-1, t // 2 :] = 0
        batches.append((ids, mask))
    rows = []
    archs = [space.full()] + [space.sample(rng) for _ in range(max(samples - 1, 0))] if samples > 0 else []
    with torch.no_grad():
        for n, arch in enumerate(archs):
            sub = derive(net, arch)
            weights = net.one_hot(arch)
            diff = 0.0
            for ids, mask in batches:
                a, b = net(ids, mask, weights), sub(ids, mask)
                diff = max(diff, float((a - b)[mask.bool()].abs().max()))
            size = sub.size()
            rows.append({"arch": format_arch(space, arch), "max_abs_diff": diff, "params": size.params, "mb": round(size.mb, 3)})
            if log is not None:
                print(f"[{n + 1}/{len(archs)}] {rows[-1]['arch']}  diff {diff:.2e}  {size.mb:.2f} MB", file=log, flush=True)
    worst = max((r["max_abs_diff"] for r in rows), default=0.0)
    return {
        "space": space.name,
        "space_hash": space.hash,
        "samples": len(rows),
        "seed": seed,
        "tolerance": tolerance,
        "max_abs_diff": worst,
        "ok": worst <= tolerance,
        "seconds": round(time.perf_counter() - t0, 2),
        "subnets": rows,
    }
