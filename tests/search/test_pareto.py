"""Pareto front and pick rule on points worked out by hand."""

import pytest

from nas.errors import ConfigError, StorageError
from nas.search.pareto import Point, dominates, pareto_front, pick

DIRS = ("maximize", "minimize", "minimize")


def pt(trial, q, ms, mb):
    return Point(trial=trial, values=(q, ms, mb), quality=q, latency_ms=ms, size_mb=mb)


# quality, latency, size. By hand: 2 dominates 1 (better q, same ms, smaller mb); 3 is
# dominated by 0 (0.9 >= 0.8, 4 <= 5, 10 <= 10); 4 equals 0 (neither dominates).
POINTS = [pt(0, 0.9, 4.0, 10.0), pt(1, 0.7, 2.0, 6.0), pt(2, 0.8, 2.0, 5.0), pt(3, 0.8, 5.0, 10.0),
          pt(4, 0.9, 4.0, 10.0), pt(5, 0.5, 1.0, 9.0)]


def test_dominates():
    assert dominates((0.8, 2.0, 5.0), (0.7, 2.0, 6.0), DIRS)
    assert not dominates((0.9, 4.0, 10.0), (0.9, 4.0, 10.0), DIRS)
    assert not dominates((0.9, 4.0, 10.0), (0.8, 2.0, 5.0), DIRS)
    with pytest.raises(ConfigError, match="directions"):
        dominates((1,), (2,), ("up",))
    with pytest.raises(ConfigError, match="values"):
        dominates((1, 2), (2,), ("maximize",))


def test_front():
    front = pareto_front(POINTS, DIRS)
    assert [p.trial for p in front] == [0, 2, 4, 5]
    assert pareto_front([(1, 5), (2, 6), (0, 9)], ["maximize", "minimize"], key=lambda p: p) == [(1, 5), (2, 6)]
    assert pareto_front([], DIRS) == []


def test_pick_rule():
    front = pareto_front(POINTS, DIRS)
    assert pick(front).trial == 0  # best quality; tie 0/4 -> lower trial
    assert pick(front, best_quality=True).trial == 0
    assert pick(front, max_latency_ms=3.0).trial == 2
    assert pick(front, max_latency_ms=2.0).trial == 2  # <= fits
    assert pick(front, max_latency_ms=1.5).trial == 5
    assert pick(front, trial=4).trial == 4


def test_pick_errors():
    front = pareto_front(POINTS, DIRS)
    with pytest.raises(ConfigError, match="fastest is trial 5 at 1 ms"):
        pick(front, max_latency_ms=0.5)
    with pytest.raises(StorageError, match="trial 3: not among"):
        pick(front, trial=3)
    with pytest.raises(ConfigError, match="choose one"):
        pick(front, trial=0, max_latency_ms=4.0)
    with pytest.raises(ConfigError, match="max_latency_ms"):
        pick(front, max_latency_ms=-1)
    with pytest.raises(StorageError, match="no complete trials"):
        pick([])
