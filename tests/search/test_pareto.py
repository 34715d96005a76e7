"""Pareto front and pick rule on points worked out by hand."""

import pytest

from nas.errors import ConfigError, StorageError
from nas.search.pareto import Point, bound_names, dominates, fitting, latencies, pareto_front, pick

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


# --- a study priced per phase: one bound per latency (max_values) ---------------------------------------------

DIRS4 = ("maximize", "minimize", "minimize", "minimize")


def ph(trial, q, ttft, tpot, mb):
    """quality, ttft_ms, tpot_ms, size_mb; latency_ms is the ttft table's price, as the trainer records it."""
    return Point(trial=trial, values=(q, ttft, tpot, mb), quality=q, latency_ms=ttft, size_mb=mb,
                 latencies={"latency_ms": ttft, "ttft_ms": ttft, "tpot_ms": tpot})


# By hand: nobody dominates anybody except 4 (dominated by 1: lower quality, slower in both, bigger).
PHASE_POINTS = [ph(0, 0.9, 50.0, 20.0, 10.0), ph(1, 0.8, 30.0, 16.0, 8.0), ph(2, 0.7, 45.0, 9.0, 7.0),
                ph(3, 0.6, 20.0, 14.0, 5.0), ph(4, 0.75, 35.0, 17.0, 9.0)]


def test_pick_with_one_bound_per_latency():
    front = pareto_front(PHASE_POINTS, DIRS4)
    assert [p.trial for p in front] == [0, 1, 2, 3]
    assert pick(front, max_values={"ttft_ms": 40, "tpot_ms": 16}).trial == 1  # <= fits
    assert pick(front, max_values={"ttft_ms": 40, "tpot_ms": 15}).trial == 3  # 1 is too slow per token
    assert pick(front, max_values={"tpot_ms": 10}).trial == 2
    assert pick(front, max_values={"ttft_ms": 60, "tpot_ms": 25, "size_mb": 7}).trial == 2
    assert pick(front, max_values={}).trial == 0  # no bound: the best quality
    assert [p.trial for p in fitting(front, max_values={"ttft_ms": 46})] == [1, 2, 3]
    assert bound_names(front) == ("latency_ms", "ttft_ms", "tpot_ms", "size_mb")
    assert latencies(pt(0, 0.9, 4.0, 10.0)) == {"latency_ms": 4.0}  # a point that records latency_ms only
    assert pick(POINTS, max_values={"latency_ms": 3.0}).trial == pick(POINTS, max_latency_ms=3.0).trial == 2


def test_pick_ties_go_to_lower_latencies():
    a, b = ph(0, 0.8, 30.0, 16.0, 8.0), ph(1, 0.8, 30.0, 12.0, 9.0)
    assert pick([a, b]).trial == 1  # same quality and ttft: the faster token wins over the smaller size


def test_max_values_errors():
    front = pareto_front(PHASE_POINTS, DIRS4)
    with pytest.raises(ConfigError) as e:
        pick(front, max_values={"ttft_ms": 10, "tpot_ms": 5})
    assert str(e.value) == ("max: no trial fits ttft_ms <= 10, tpot_ms <= 5 (fastest in ttft_ms is trial 3 at 20 ms; "
                            "fastest in tpot_ms is trial 2 at 9 ms)")
    with pytest.raises(ConfigError, match=r"smallest in size_mb is trial 3 at 5 MB"):
        pick(front, max_values={"size_mb": 1})
    with pytest.raises(ConfigError) as e:
        pick(front, max_values={"e2e_ms": 10})
    assert str(e.value) == ("max: 'e2e_ms' is not a latency objective of this study nor size_mb; "
                            "known: latency_ms, ttft_ms, tpot_ms, size_mb")
    with pytest.raises(ConfigError, match=r"max: 'tpot_ms' is not .* known: latency_ms, size_mb"):
        pick(POINTS, max_values={"tpot_ms": 10})  # a single-latency study has no tpot_ms
    with pytest.raises(ConfigError, match=r"max: ttft_ms: must be a number > 0, got 0"):
        pick(front, max_values={"ttft_ms": 0})
    with pytest.raises(ConfigError) as e:  # two latencies: one bound is ambiguous
        pick(front, max_latency_ms=40)
    assert str(e.value).startswith("max_latency_ms: the study has 2 latencies (ttft_ms, tpot_ms); bound each: "
                                   "--max ttft_ms=MS --max tpot_ms=MS")
    with pytest.raises(ConfigError, match="choose one of"):
        pick(front, max_values={"ttft_ms": 40}, trial=1)
