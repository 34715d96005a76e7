"""Does a subnet's quality before fine-tuning rank subnets as their fine-tuned quality does?

Every trial records its derived subnet's quality twice: with the weights it inherited from
the supernet (``quality_before``, a cheap proxy) and after its distillation fine-tuning
(``quality_after``, the objective). When the proxy ranks trials the way the fine-tuned
quality does, short searches (and short fine-tuning) can be trusted to pick the right
subnets; :func:`proxy_agreement` says how far: Kendall's τ-b between the two over a
study's COMPLETE trials (pure; :mod:`nas.search.study` reads the trials).

When trials fine-tune for different budgets (a shared-supernet study samples the budget), the
budget moves the fine-tuned quality too, which the proxy cannot know; :func:`proxy_agreement`
then also gives τ over pairs of trials in the same budget half (``kendall_tau_same_budget``):
how well the proxy ranks subnets that fine-tune alike.

Example:
    >>> proxy_agreement([(0.1, 0.5), (0.2, 0.6), (0.3, 0.7)])["kendall_tau"]
    1.0
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

MIN_TRIALS = 3  # fewer pairs say nothing about a ranking


def kendall_tau_b(x: Sequence[float], y: Sequence[float], groups: Sequence[Any] | None = None) -> float:
    """Kendall's τ-b of two equally long sequences (ties counted as in scipy's default); NaN if undefined.

    With ``groups``, only pairs in the same group count (a stratified τ: concordant, discordant and
    tied pairs pooled over the groups).
    """
    n = len(x)
    if n != len(y) or (groups is not None and len(groups) != n):
        raise ValueError(f"x, y and groups differ in length ({n}, {len(y)}, {n if groups is None else len(groups)})")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            if groups is not None and groups[i] != groups[j]:
                continue
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


def budget_halves(budgets: Sequence[float]) -> list[int]:
    """0 for a budget at or below the median of ``budgets``, 1 above it (the strata of the same-budget τ)."""
    median = statistics.median(budgets)
    return [int(b > median) for b in budgets]


def proxy_agreement(pairs: Sequence[tuple[float, float]],
                    budgets: Sequence[float | None] | None = None) -> dict[str, Any]:
    """Kendall τ-b between the proxy and the fine-tuned quality of ``pairs`` ``(before, after)``.

    Pairs with a NaN are left out. Returns ``{"kendall_tau", "trials"}``; τ is NaN with fewer than
    :data:`MIN_TRIALS` usable trials. With ``budgets`` (each trial's fine-tuning steps) that differ, it
    adds ``kendall_tau_same_budget``: τ over pairs in the same budget half (:func:`budget_halves`), and
    ``budget_median``; a trial without a recorded budget (None) leaves them out.
    """
    if budgets is not None and len(budgets) != len(pairs):
        raise ValueError(f"budgets has {len(budgets)} values for {len(pairs)} pairs")
    if budgets is not None and not all(isinstance(b, (int, float)) for b in budgets):
        budgets = None
    rows = [(float(b), float(a), None if budgets is None else float(budgets[i])) for i, (b, a) in enumerate(pairs)]
    usable = [r for r in rows if not (math.isnan(r[0]) or math.isnan(r[1]))]
    if len(usable) < MIN_TRIALS:
        return {"kendall_tau": float("nan"), "trials": len(usable)}
    before, after = [r[0] for r in usable], [r[1] for r in usable]
    out: dict[str, Any] = {"kendall_tau": kendall_tau_b(before, after), "trials": len(usable)}
    spent = [r[2] for r in usable]
    if budgets is not None and len(set(spent)) > 1:
        out["kendall_tau_same_budget"] = kendall_tau_b(before, after, budget_halves(spent))
        out["budget_median"] = statistics.median(spent)
    return out
