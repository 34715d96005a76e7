"""Does a subnet's quality before fine-tuning rank subnets as their fine-tuned quality does?

Every trial records its derived subnet's quality twice: with the weights it inherited from
the supernet (``quality_before``, a cheap proxy) and after its distillation fine-tuning
(``quality_after``, the objective). When the proxy ranks trials the way the fine-tuned
quality does, short searches (and short fine-tuning) can be trusted to pick the right
subnets; :func:`proxy_agreement` says how far: Kendall's τ-b between the two over a
study's COMPLETE trials (pure; :mod:`nas.search.study` reads the trials).

Example:
    >>> proxy_agreement([(0.1, 0.5), (0.2, 0.6), (0.3, 0.7)])["kendall_tau"]
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

MIN_TRIALS = 3  # fewer pairs say nothing about a ranking


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b of two equally long sequences (ties counted as in scipy's default); NaN if undefined."""
    n = len(x)
    if n != len(y):
        raise ValueError(f"x and y differ in length ({n} vs {len(y)})")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom else float("nan")


def proxy_agreement(pairs: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Kendall τ-b between the proxy and the fine-tuned quality of ``pairs`` ``(before, after)``.

    Pairs with a NaN are left out. Returns ``{"kendall_tau", "trials"}``; τ is NaN with fewer than
    :data:`MIN_TRIALS` usable trials.
    """
    usable = [(float(b), float(a)) for b, a in pairs if not (math.isnan(float(b)) or math.isnan(float(a)))]
    if len(usable) < MIN_TRIALS:
        return {"kendall_tau": float("nan"), "trials": len(usable)}
    return {"kendall_tau": kendall_tau_b([b for b, _ in usable], [a for _, a in usable]), "trials": len(usable)}
