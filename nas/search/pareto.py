"""Pure Pareto rules: the non-dominated front of a set of points, and which point to pick.

Nothing here touches a database or a file; :mod:`nas.search.study` turns a
study's trials into :class:`Point` objects.

Pick rule (used by ``nas pareto``, ``nas export`` and :func:`nas.search.api.pick_trial`):

* ``trial=N`` – that trial (it must be among the points given);
* ``max_latency_ms=X`` – the highest quality whose latency fits (``latency_ms <= X``);
* neither (or ``best_quality=True``) – the highest quality.

Ties on quality go to the lower latency, then the smaller size, then the lower
trial number, so the choice is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nas.errors import ConfigError, StorageError

DIRECTIONS = ("maximize", "minimize")
T = TypeVar("T")


@dataclass(frozen=True)
class Point:
    """One finished trial as the Pareto rules see it.

    Attributes:
        trial: the Optuna trial number.
        values: the objective values, in the study's objective order.
        quality, latency_ms, size_mb: the three metrics (whatever the objectives are).
        arch_summary: ``nas.spaces.format_arch`` of the trial's architecture.
        arch: the architecture ``{label: choice}``.
        attrs: the trial's user attributes (see :mod:`nas.search.attrs`).
    """

    trial: int
    values: tuple[float, ...]
    quality: float
    latency_ms: float
    size_mb: float
    arch_summary: str = ""
    arch: dict[str, int] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """True when ``a`` is at least as good as ``b`` in every objective and better in one."""
    if len(a) != len(b) or len(a) != len(directions):
        raise ConfigError(f"values: {len(a)} and {len(b)} values for {len(directions)} directions")
    better = False
    for x, y, d in zip(a, b, directions):
        if d not in DIRECTIONS:
            raise ConfigError(f"directions: unknown direction {d!r}; known: {', '.join(DIRECTIONS)}")
        if d == "minimize":
            x, y = -x, -y
        if x < y:
            return False
        if x > y:
            better = True
    return better


def pareto_front(points: Sequence[T], directions: Sequence[str], *,
                 key: Callable[[T], Sequence[float]] = lambda p: p.values) -> list[T]:  # type: ignore[attr-defined]
    """The points no other point dominates, in input order (equal points all stay).

    Args:
        points: anything with objective values (``Point`` by default).
        directions: ``maximize`` or ``minimize`` per objective.
        key: how to read a point's values.

    Returns:
        The non-dominated points.

    Example:
        >>> pareto_front([(1, 5), (2, 6), (0, 9)], ["maximize", "minimize"], key=lambda p: p)
        [(1, 5), (2, 6)]
    """
    vals = [tuple(float(v) for v in key(p)) for p in points]
    return [p for p, v in zip(points, vals) if not any(dominates(w, v, directions) for w in vals)]


def _rank(p: Point) -> tuple[float, float, float, int]:
    return (-p.quality, p.latency_ms, p.size_mb, p.trial)


def pick(front: Sequence[Point], *, max_latency_ms: float | None = None, best_quality: bool = False,
         trial: int | None = None) -> Point:
    """Choose one point by the rule in the module docstring.

    Args:
        front: the candidate points (usually a Pareto front).
        max_latency_ms: the latency budget; the highest quality within it wins.
        best_quality: the highest quality regardless of latency (the default rule).
        trial: a trial number to pick directly.

    Returns:
        The chosen point.

    Raises:
        ConfigError: contradictory options, or no point fits the budget.
        StorageError: no points at all, or ``trial`` is not among them.
    """
    given = [n for n, v in (("max_latency_ms", max_latency_ms), ("best_quality", best_quality or None),
                            ("trial", trial)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"{given[1]}: choose one of max_latency_ms, best_quality, trial (got {', '.join(given)})")
    if not front:
        raise StorageError("front: the study has no complete trials")
    if trial is not None:
        for p in front:
            if p.trial == trial:
                return p
        raise StorageError(f"trial {trial}: not among the candidates (trials {', '.join(str(p.trial) for p in front)})")
    if max_latency_ms is not None:
        if not max_latency_ms > 0:
            raise ConfigError(f"max_latency_ms: must be > 0, got {max_latency_ms}")
        fits = [p for p in front if p.latency_ms <= max_latency_ms]
        if not fits:
            fastest = min(front, key=lambda p: (p.latency_ms, p.trial))
            raise ConfigError(
                f"max_latency_ms: no trial fits {max_latency_ms:g} ms "
                f"(fastest is trial {fastest.trial} at {fastest.latency_ms:.4g} ms)"
            )
        return min(fits, key=_rank)
    return min(front, key=_rank)
