"""Pure 2-D hypervolume of an (accuracy ↑, latency ↓) point set."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def hypervolume_2d(points: Iterable[Sequence[float]], ref: Sequence[float]) -> float:
    """Area dominated by ``points`` and bounded by ``ref``, for accuracy (maximize) × latency (minimize).

    A point ``(a, l)`` dominates the rectangle ``[ref_a, a] × [l, ref_l]``; the
    hypervolume is the area of the union of those rectangles. Points with
    ``a <= ref_a`` or ``l >= ref_l`` add nothing. Dominated points are harmless.

    Args:
        points: ``(accuracy, latency)`` pairs.
        ref: ``(accuracy_ref, latency_ref)``: the worst accuracy and latency that still count.

    Returns:
        The area (0.0 for no point inside the reference box).

    Example:
        >>> hypervolume_2d([(0.8, 2.0), (0.6, 1.0)], (0.0, 4.0))  # 0.8·2 + 0.6·1
        2.2
    """
    ra, rl = float(ref[0]), float(ref[1])
    inside = sorted((float(l), float(a)) for a, l in points if float(a) > ra and float(l) < rl)
    area, best = 0.0, ra
    # Sweep from the fastest point: each point adds the strip of latency up to the next point's,
    # at the best accuracy seen so far.
    for i, (lat, acc) in enumerate(inside):
        best = max(best, acc)
        nxt = inside[i + 1][0] if i + 1 < len(inside) else rl
        area += (nxt - lat) * (best - ra)
    return round(area, 12)
