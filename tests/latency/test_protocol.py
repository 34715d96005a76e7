import pytest

from nas.errors import ConfigError, LatencyTableError
from nas.latency.protocol import Protocol, measure, quartiles, summarize


class FakeClock:
    """Time advances only when a fake runner 'runs'."""

    def __init__(self) -> None:
        self.t = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.t

    def runner(self, name: str, durations_ms: list[float]):
        it = {"i": 0}

        def run() -> None:
            self.calls.append(name)
            self.t += durations_ms[it["i"] % len(durations_ms)] / 1e3
            it["i"] += 1

        return run


def test_quartiles_by_hand():
    assert quartiles([1, 2, 3, 4]) == pytest.approx((1.75, 2.5, 3.25))
    assert summarize([2.0, 2.0, 2.0]) == {"median_ms": 2.0, "iqr_ms": 0.0, "rel_iqr": 0.0, "n": 3}


def test_steady_entries_give_exact_medians_and_interleave():
    clock = FakeClock()
    runners = {k: clock.runner(k, [ms]) for k, ms in (("a", 1.0), ("b", 2.0), ("c", 4.0))}
    p = Protocol(warmup=2, rounds=4, repeats=3, seed=0)
    out = measure(runners, p, clock=clock)
    assert {k: v["median_ms"] for k, v in out.items()} == pytest.approx({"a": 1.0, "b": 2.0, "c": 4.0})
    assert all(v["n"] == 12 and v["iqr_ms"] == pytest.approx(0.0) and not v["noisy"] for v in out.values())
    timed = clock.calls[3 * 2:]  # after the warm-up
    assert len(timed) == 3 * 4 * 3
    rounds = [timed[r * 9:(r + 1) * 9] for r in range(4)]
    orders = []
    for calls in rounds:  # each round visits every entry once, its repeats back to back
        blocks = [calls[i:i + 3] for i in range(0, 9, 3)]
        assert all(len(set(b)) == 1 for b in blocks)
        assert sorted(b[0] for b in blocks) == ["a", "b", "c"]
        orders.append(tuple(b[0] for b in blocks))
    assert len(set(orders)) > 1  # shuffled between rounds


def test_noisy_entry_is_remeasured_flagged_and_refused():
    def run(max_noisy: float):
        clock = FakeClock()
        runners = {"steady": clock.runner("steady", [1.0]), "noisy": clock.runner("noisy", [1.0, 2.0, 3.0, 4.0])}
        p = Protocol(warmup=0, rounds=2, repeats=2, noise_threshold=0.1, remeasure=1, max_noisy_fraction=max_noisy)
        return clock, measure(runners, p, clock=clock)

    clock, out = run(0.5)
    assert out["noisy"]["noisy"] and not out["steady"]["noisy"]
    assert out["noisy"]["rel_iqr"] == pytest.approx(1.5 / 2.5)
    assert clock.calls.count("noisy") == 8 and clock.calls.count("steady") == 4  # one re-measure pass
    with pytest.raises(LatencyTableError, match="1 of 2 entries stay noisy"):
        run(0.4)


def test_protocol_validates_fields():
    with pytest.raises(ConfigError, match="protocol.rounds"):
        Protocol(rounds=0)
    with pytest.raises(ConfigError, match="protocol.noise_threshold"):
        Protocol(noise_threshold=0)
    assert Protocol().to_dict()["repeats"] == 5
