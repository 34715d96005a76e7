"""The feasibility rule: never return an architecture above the latency budget.

If the argmax architecture's table latency exceeds T, :func:`most_probable_feasible`
walks greedily to a feasible one: each move changes one label (or one
``heads``+``attn.bits`` / ``ffn``+``ffn.bits`` pair, which the table prices
jointly) to options that lower the latency, choosing the move that loses the
least log-probability per millisecond saved, until the latency is ≤ T. Every
move strictly lowers the latency and, with pair and keep moves, some move
exists until the cheapest architecture is reached, so the walk ends whenever
T ≥ the space's minimum latency (checked upfront by the trainer).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping

from nas.errors import ConfigError
from nas.spaces.choice import layer_label
from nas.spaces.space import Arch, SearchSpace

LatencyFn = Callable[[Mapping[str, int]], float]


def _groups(space: SearchSpace) -> list[tuple[str, ...]]:
    groups: list[tuple[str, ...]] = [(c.label,) for c in space]
    for i in range(space.dims.num_layers):
        for a, b in ((layer_label(i, "heads"), layer_label(i, "attn.bits")), (layer_label(i, "ffn"), layer_label(i, "ffn.bits"))):
            if a in space and b in space:
                groups.append((a, b))
    return groups


def most_probable_feasible(
    space: SearchSpace,
    latency: LatencyFn,
    log_probs: Mapping[str, Mapping[int, float]],
    start: Mapping[str, int],
    target_ms: float,
) -> tuple[Arch, list[str]]:
    """Walk from ``start`` to an architecture with ``latency(arch) <= target_ms``.

    Args:
        space: the search space.
        latency: table latency of an architecture (e.g. ``Predictor.latency_ms``).
        log_probs: ``{label: {option: log p}}`` of the learned distribution.
        start: the argmax architecture.
        target_ms: the budget T.

    Returns:
        ``(arch, moves)``: the feasible architecture and one line per move made
        (empty when ``start`` already fits).

    Raises:
        ConfigError: no feasible architecture is reachable (T below the space's minimum).
    """
    arch = dict(start)
    lat = latency(arch)
    moves: list[str] = []
    groups = _groups(space)
    while lat > target_ms:
        best: tuple[float, Arch, float, str] | None = None
        for g in groups:
            for values in itertools.product(*(space.options(lbl) for lbl in g)):
                if all(arch[lbl] == v for lbl, v in zip(g, values)):
                    continue
                cand = dict(arch)
                cand.update(zip(g, values))
                if not space.kept_layers(cand):
                    continue
                new = latency(cand)
                saved = lat - new
                if saved <= 1e-12:
                    continue
                lost = sum(log_probs[lbl][arch[lbl]] - log_probs[lbl][v] for lbl, v in zip(g, values))
                score = lost / saved
                if best is None or score < best[0]:
                    desc = ", ".join(f"{lbl} {arch[lbl]}→{v}" for lbl, v in zip(g, values) if arch[lbl] != v)
                    best = (score, cand, new, desc)
        if best is None:
            raise ConfigError(f"target_ms: {target_ms:.4g} ms is below every reachable architecture ({lat:.4g} ms)")
        _, arch, new, desc = best
        moves.append(f"{desc}: {lat:.4g} → {new:.4g} ms")
        lat = new
    return arch, moves


def log_probs_of(probs: Mapping[str, object], space: SearchSpace) -> dict[str, dict[int, float]]:
    """``{label: {option: log p}}`` from per-label probability tensors or lists."""
    out = {}
    for c in space:
        p = [float(x) for x in probs[c.label]]  # type: ignore[attr-defined]
        out[c.label] = {o: math.log(max(q, 1e-30)) for o, q in zip(c.options, p)}
    return out
