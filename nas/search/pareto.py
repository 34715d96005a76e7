"""Pure Pareto rules: the non-dominated front of a set of points, and which point to pick.

Nothing here touches a database or a file; :mod:`nas.search.study` turns a
study's trials into :class:`Point` objects.

Pick rule (used by ``nas pareto``, ``nas export`` and :func:`nas.search.api.pick_trial`):

* ``trial=N`` – that trial (it must be among the points given);
* ``max_values={name: X, ...}`` – the highest quality with every ``name <= X``; a name is a
  latency objective the points have (``latency_ms``, ``ttft_ms``, ``tpot_ms``, ``request_ms``;
  :mod:`nas.latency.budgets`) or ``size_mb`` (``nas pareto --max ttft_ms=40 --max tpot_ms=15``);
* ``max_latency_ms=X`` – the same as ``max_values={"latency_ms": X}``, for a study with one
  latency (a study priced per phase has two: name them);
* none of these (or ``best_quality=True``) – the highest quality.

Ties on quality go to the lower latencies (in :data:`~nas.latency.budgets.LATENCY_OBJECTIVES`
order), then the smaller size, then the lower trial number, so the choice is deterministic.

Example:
    >>> a = Point(trial=0, values=(), quality=0.9, latency_ms=30, size_mb=9, latencies={"ttft_ms": 30, "tpot_ms": 20})
    >>> b = Point(trial=1, values=(), quality=0.7, latency_ms=20, size_mb=6, latencies={"ttft_ms": 20, "tpot_ms": 10})
    >>> pick([a, b], max_values={"ttft_ms": 40, "tpot_ms": 15}).trial
    1
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nas.errors import ConfigError, StorageError
from nas.latency.budgets import LATENCY, LATENCY_OBJECTIVES, TABLE_PHASES

DIRECTIONS = ("maximize", "minimize")
T = TypeVar("T")


@dataclass(frozen=True)
class Point:
    """One finished trial as the Pareto rules see it.

    Attributes:
        trial: the Optuna trial number.
        values: the objective values, in the study's objective order.
        quality, latency_ms, size_mb: the three metrics (whatever the objectives are).
        latencies: every latency objective the trial's metrics hold (``latency_ms``, ``ttft_ms``,
            ``tpot_ms``, ``request_ms``: :mod:`nas.latency.budgets`), by name; empty: only ``latency_ms``.
        arch_summary: ``nas.spaces.format_arch`` of the trial's architecture.
        arch: the architecture ``{label: choice}``.
        attrs: the trial's user attributes (see :mod:`nas.search.attrs`).
    """

    trial: int
    values: tuple[float, ...]
    quality: float
    latency_ms: float
    size_mb: float
    latencies: Mapping[str, float] = field(default_factory=dict)
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


def latencies(p: Point) -> dict[str, float]:
    """``p``'s latencies by name, in :data:`~nas.latency.budgets.LATENCY_OBJECTIVES` order (``latency_ms`` alone when
    it records no others)."""
    got = {k: float(p.latencies[k]) for k in LATENCY_OBJECTIVES if k in p.latencies}
    if not got and not math.isnan(p.latency_ms):
        got[LATENCY] = float(p.latency_ms)
    return got


def bound_names(points: Sequence[Point]) -> tuple[str, ...]:
    """The names ``max_values`` may bound on ``points``: their latency objectives, then ``size_mb``."""
    have = {k for p in points for k in latencies(p)}
    return (*(k for k in LATENCY_OBJECTIVES if k in have), "size_mb")


def _value(p: Point, name: str) -> float:
    return float(p.size_mb) if name == "size_mb" else latencies(p).get(name, math.nan)


def _rank(p: Point) -> tuple[Any, ...]:
    lat = latencies(p)
    return (-p.quality, *(lat.get(k, math.inf) for k in LATENCY_OBJECTIVES), p.size_mb, p.trial)


def fitting(points: Sequence[Point], *, max_values: Mapping[str, float] | None = None,
            max_latency_ms: float | None = None) -> list[Point]:
    """The points within every bound (``name <= value``), in input order; see the module docstring.

    Args:
        points: the candidates.
        max_values: ``{name: bound}``; names from :func:`bound_names`.
        max_latency_ms: ``latency_ms``'s bound, for points with one latency.

    Raises:
        ConfigError: both given; an unknown name (the message lists the known ones); a bound <= 0;
            ``max_latency_ms`` on points priced per phase; no point fits (naming the fastest point per bound).
    """
    if max_values and max_latency_ms is not None:
        raise ConfigError("max_values: choose one of max_latency_ms and max_values (got both)")
    if max_latency_ms is not None:
        budgets = sorted({k for p in points for k in latencies(p) if k in TABLE_PHASES},
                         key=list(TABLE_PHASES).index)
        if len(budgets) > 1:
            raise ConfigError(f"max_latency_ms: the study has {len(budgets)} latencies ({', '.join(budgets)}); "
                              f"bound each: " + " ".join(f"--max {b}=MS" for b in budgets)
                              + " (max_values={" + ", ".join(f"{b!r}: MS" for b in budgets) + "})")
        if not max_latency_ms > 0:
            raise ConfigError(f"max_latency_ms: must be > 0, got {max_latency_ms}")
        bounds = {LATENCY: float(max_latency_ms)}
    else:
        bounds = dict(max_values or {})
        known = bound_names(points)
        for name, v in bounds.items():
            if name not in known:
                raise ConfigError(f"max: {name!r} is not a latency objective of this study nor size_mb; "
                                  f"known: {', '.join(known)}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"max: {name}: must be a number > 0, got {v!r}")
    fits = [p for p in points if all(_value(p, n) <= v for n, v in bounds.items())]
    if not fits and points and bounds:
        if max_latency_ms is not None:
            fastest = min(points, key=lambda p: (_value(p, LATENCY), p.trial))
            raise ConfigError(f"max_latency_ms: no trial fits {max_latency_ms:g} ms "
                              f"(fastest is trial {fastest.trial} at {_value(fastest, LATENCY):.4g} ms)")
        best = []
        for n in bounds:
            q = min(points, key=lambda p: (math.inf if math.isnan(_value(p, n)) else _value(p, n), p.trial))
            unit = "MB" if n == "size_mb" else "ms"
            best.append(f"{'smallest' if n == 'size_mb' else 'fastest'} in {n} is trial {q.trial} at "
                        f"{_value(q, n):.4g} {unit}")
        raise ConfigError("max: no trial fits " + ", ".join(f"{n} <= {v:g}" for n, v in bounds.items())
                          + " (" + "; ".join(best) + ")")
    return fits


def pick(front: Sequence[Point], *, max_latency_ms: float | None = None, best_quality: bool = False,
         trial: int | None = None, max_values: Mapping[str, float] | None = None) -> Point:
    """Choose one point by the rule in the module docstring.

    Args:
        front: the candidate points (usually a Pareto front).
        max_latency_ms: the latency budget of a single-latency study; the highest quality within it wins.
        best_quality: the highest quality regardless of latency (the default rule).
        trial: a trial number to pick directly.
        max_values: ``{name: bound}``: the highest quality with every ``name <= bound`` (names: the points'
            latency objectives and ``size_mb``).

    Returns:
        The chosen point.

    Raises:
        ConfigError: contradictory options; an unknown name; ``max_latency_ms`` on a study priced per
            phase; no point fits the bounds (the message names the fastest point per bound).
        StorageError: no points at all, or ``trial`` is not among them.
    """
    given = [n for n, v in (("max_latency_ms", max_latency_ms), ("max_values", max_values or None),
                            ("best_quality", best_quality or None), ("trial", trial)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"{given[1]}: choose one of max_latency_ms, max_values, best_quality, trial "
                          f"(got {', '.join(given)})")
    if not front:
        raise StorageError("front: the study has no complete trials")
    if trial is not None:
        for p in front:
            if p.trial == trial:
                return p
        raise StorageError(f"trial {trial}: not among the candidates (trials {', '.join(str(p.trial) for p in front)})")
    if max_latency_ms is not None or max_values:
        return min(fitting(front, max_values=max_values, max_latency_ms=max_latency_ms), key=_rank)
    return min(front, key=_rank)
