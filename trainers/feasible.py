"""The feasibility rule: never return an architecture above the latency budget.

If the argmax architecture's table latency exceeds T, :func:`most_probable_feasible`
walks greedily to a feasible one: each move changes one label (or one
``heads``+``attn.bits`` / ``ffn``+``ffn.bits`` pair, which the table prices
jointly) to options that lower the latency, choosing the move that loses the
least log-probability per millisecond saved, until the latency is ≤ T. Every
move strictly lowers the latency, so the walk ends (the space is finite). With one
table the latency is a sum over the blocks, so from any architecture above the
cheapest one some pair or keep move lowers it (one corner excepted: when every
layer may be skipped, the last kept layer is never swapped for a cheaper one,
which takes two moves); the walk then ends feasible whenever T ≥ the space's
minimum latency (checked upfront by the trainer).

Several budgets (a decoder's ``ttft_ms`` and ``tpot_ms``): an architecture is
feasible iff every budget holds, ``max_b L_b(arch)/T_b ≤ 1``; the same walks run
on that ratio (:func:`budget_ratio`, target 1). Each move still strictly lowers it,
so the walk still ends, but the max of sums is no sum: where every move that
lowers the binding budget raises another one to the current maximum (e.g. int4
cheaper in decode but dearer in prefill, every layer already at its smallest
width), the walk stops above 1 although a feasible architecture may exist
elsewhere (each T_b above its own minimum, checked upfront, does not make them
reachable together). It then raises :class:`ConfigError` naming the budgets.
In measured tables shrinking a layer (fewer heads, a narrower FFN, a skipped
layer) lowers both phases, so such a stop needs budgets near their minima.

The mirror rule for the ``band`` loss, whose aim is ``[band_low·T, T]``: if the
argmax architecture is *below* ``band_low·T`` (a short search at a large T leaves
the distribution near its start: at 20 steps, 8 of 18 benchmark trials derived
0.5–0.86·T), :func:`most_probable_in_band` walks up instead. Its moves only grow
the subnet (keep a layer, more heads, a wider FFN, more weight bits: every
changed label to a larger option), so it never buys latency with a loss of
capacity (int4 kernels slower than int8 ones, as on AVX-512 VNNI, would
otherwise make 8→4 bits a "growth"); each move is the one that loses the least
log-probability per millisecond added without passing T, until the latency
reaches ``band_low·T`` or no move fits.
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


def budget_ratio(latencies: Mapping[str, LatencyFn], targets_ms: Mapping[str, float]) -> LatencyFn:
    """``arch ↦ max_b L_b(arch)/T_b`` over the budgets ``targets_ms`` names: every budget holds iff it is ≤ 1.

    Args:
        latencies: ``{budget: latency function}``, every budget of ``targets_ms`` among them.
        targets_ms: ``{budget: T_b}`` (> 0).

    Example:
        >>> r = budget_ratio({"ttft_ms": lambda a: 12.0, "tpot_ms": lambda a: 1.0}, {"ttft_ms": 10.0, "tpot_ms": 2.0})
        >>> r({})
        1.2
    """
    pairs = [(latencies[b], float(t)) for b, t in targets_ms.items()]
    return lambda arch: max(fn(arch) / t for fn, t in pairs)


def most_probable_feasible(
    space: SearchSpace,
    latency: LatencyFn,
    log_probs: Mapping[str, Mapping[int, float]],
    start: Mapping[str, int],
    target_ms: float,
    *,
    unit: str = "ms",
    field: str = "target_ms",
) -> tuple[Arch, list[str]]:
    """Walk from ``start`` to an architecture with ``latency(arch) <= target_ms``.

    Args:
        space: the search space.
        latency: table latency of an architecture (e.g. ``Predictor.latency_ms``), or
            :func:`budget_ratio` of several budgets (then ``target_ms`` is 1).
        log_probs: ``{label: {option: log p}}`` of the learned distribution.
        start: the argmax architecture.
        target_ms: the budget T.
        unit, field: how the moves and the error name ``latency``'s values and the target.

    Returns:
        ``(arch, moves)``: the feasible architecture and one line per move made
        (empty when ``start`` already fits).

    Raises:
        ConfigError: no feasible architecture is reachable (T below the space's minimum; with several
            budgets, the walk stopped above 1: see the module docstring).
    """
    arch = dict(start)
    lat = latency(arch)
    moves: list[str] = []
    while lat > target_ms:
        best = _best_move(space, latency, log_probs, arch, lat, lambda new: lat - new)
        if best is None:
            raise ConfigError(f"{field}: {target_ms:.4g} {unit} is below every reachable architecture "
                              f"({lat:.4g} {unit})")
        arch, new, desc = best
        moves.append(f"{desc}: {lat:.4g} → {new:.4g} {unit}")
        lat = new
    return arch, moves


def most_probable_in_band(
    space: SearchSpace,
    latency: LatencyFn,
    log_probs: Mapping[str, Mapping[int, float]],
    start: Mapping[str, int],
    target_ms: float,
    band_low: float,
    *,
    unit: str = "ms",
) -> tuple[Arch, list[str]]:
    """Walk up from a feasible ``start`` below ``band_low·target_ms`` into ``[band_low·T, T]``.

    Each move sets every label it changes to a larger option (keep, heads, FFN width, bits) and is the
    one with the least log-probability lost per millisecond added among those that keep the latency ≤ T; the walk stops in the band or when no move fits (then the
    architecture is the largest the rule reaches, still ≤ T). With several budgets, ``latency`` is
    :func:`budget_ratio` and ``target_ms`` 1: the binding budget lands in its band, none passes its T.

    Returns:
        ``(arch, moves)``, one line per move (empty when ``start`` is already at or above ``band_low·T``).

    Raises:
        ConfigError: ``band_low`` outside (0, 1), or ``start`` above T.
    """
    if not 0 < band_low < 1:
        raise ConfigError(f"band_low: must be in (0, 1), got {band_low}")
    arch = dict(start)
    lat = latency(arch)
    if lat > target_ms:
        raise ConfigError(f"target_ms: the start is {lat:.4g} {unit}, above T = {target_ms:.4g} {unit} "
                          "(repair it first)")
    moves: list[str] = []
    while lat < band_low * target_ms:
        best = _best_move(space, latency, log_probs, arch, lat,
                          lambda new: new - lat if new <= target_ms else 0.0, grow_only=True)
        if best is None:
            break
        arch, new, desc = best
        moves.append(f"{desc}: {lat:.4g} → {new:.4g} {unit}")
        lat = new
    return arch, moves


def _best_move(space: SearchSpace, latency: LatencyFn, log_probs: Mapping[str, Mapping[int, float]],
               arch: Arch, lat: float, gain: Callable[[float], float], *,
               grow_only: bool = False) -> tuple[Arch, float, str] | None:
    """The one-group move with the least log-probability lost per unit of ``gain(new latency)`` (> 0), if any.

    ``grow_only``: only moves that set every label they change to a larger option.
    """
    best: tuple[float, Arch, float, str] | None = None
    for g in _groups(space):
        for values in itertools.product(*(space.options(lbl) for lbl in g)):
            if all(arch[lbl] == v for lbl, v in zip(g, values)):
                continue
            if grow_only and any(v < arch[lbl] for lbl, v in zip(g, values)):
                continue
            cand = dict(arch)
            cand.update(zip(g, values))
            if not space.kept_layers(cand):
                continue
            new = latency(cand)
            ms = gain(new)
            if ms <= 1e-12:
                continue
            lost = sum(log_probs[lbl][arch[lbl]] - log_probs[lbl][v] for lbl, v in zip(g, values))
            score = lost / ms
            if best is None or score < best[0]:
                desc = ", ".join(f"{lbl} {arch[lbl]}→{v}" for lbl, v in zip(g, values) if arch[lbl] != v)
                best = (score, cand, new, desc)
    return None if best is None else best[1:]


def log_probs_of(probs: Mapping[str, object], space: SearchSpace) -> dict[str, dict[int, float]]:
    """``{label: {option: log p}}`` from per-label probability tensors or lists."""
    out = {}
    for c in space:
        p = [float(x) for x in probs[c.label]]  # type: ignore[attr-defined]
        out[c.label] = {o: math.log(max(q, 1e-30)) for o, q in zip(c.options, p)}
    return out
