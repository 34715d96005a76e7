import pytest

from nas.errors import ConfigError
from nas.latency import Predictor, load_table
from nas.spaces import load_space
from trainers.feasible import most_probable_feasible


def _peaked(space, arch, overrides=None):
    """log p = 0 for the current option, −10 for the others, except ``overrides``."""
    lp = {c.label: {o: (0.0 if o == arch[c.label] else -10.0) for o in c.options} for c in space}
    lp.update(overrides or {})
    return lp


def test_takes_the_cheapest_probability_loss_per_ms(tiny_table):
    space = load_space("tiny-bert")
    pred = Predictor(load_table(tiny_table()), space)
    full = space.full()
    assert pred.latency_ms(full) == pytest.approx(18.0)
    # layer1.ffn is a coin flip between 64 and 32: moving it costs no probability and saves 2 ms.
    lp = _peaked(space, full, {"layer1.ffn": {64: -0.693, 32: -0.693, 16: -10.0}})
    arch, moves = most_probable_feasible(space, pred.latency_ms, lp, full, 17.0)
    assert arch == {**full, "layer1.ffn": 32} and pred.latency_ms(arch) == pytest.approx(16.0)
    assert len(moves) == 1 and "layer1.ffn 64→32" in moves[0]


def test_walks_until_feasible_and_leaves_feasible_start_alone(tiny_table):
    space = load_space("tiny-bert")
    pred = Predictor(load_table(tiny_table()), space)
    full = space.full()
    arch, moves = most_probable_feasible(space, pred.latency_ms, _peaked(space, full), full, 2.0)
    assert pred.latency_ms(arch) <= 2.0 and len(moves) >= 2
    assert most_probable_feasible(space, pred.latency_ms, _peaked(space, full), full, 18.0) == (full, [])


def test_unreachable_target_is_a_config_error(tiny_table):
    space = load_space("tiny-bert")
    pred = Predictor(load_table(tiny_table()), space)
    assert pred.min_latency_ms() == pytest.approx(1.5)
    with pytest.raises(ConfigError, match="target_ms"):
        most_probable_feasible(space, pred.latency_ms, _peaked(space, space.full()), space.full(), 1.0)


def test_band_fill_takes_the_cheapest_probability_loss_per_ms_added(tiny_table):
    from trainers.feasible import most_probable_in_band

    space = load_space("tiny-bert")
    pred = Predictor(load_table(tiny_table()), space)
    start = {**space.full(), "layer1.ffn": 32}
    assert pred.latency_ms(start) == pytest.approx(16.0)
    # layer1.ffn is a coin flip between 64 and 32: moving it back costs no probability and adds 2 ms
    lp = _peaked(space, start, {"layer1.ffn": {64: -0.693, 32: -0.693, 16: -10.0}})
    arch, moves = most_probable_in_band(space, pred.latency_ms, lp, start, 18.0, 0.95)
    assert arch == space.full() and len(moves) == 1 and "layer1.ffn 32→64" in moves[0]


def test_band_fill_never_passes_t_and_leaves_an_arch_in_the_band_alone(tiny_table):
    from trainers.feasible import most_probable_in_band

    space = load_space("tiny-bert")
    pred = Predictor(load_table(tiny_table()), space)
    low = {**space.full(), "layer1.ffn.bits": 8}  # layer 1's FFN at 1 ms instead of 4: 15 ms
    # T = 17: int8 → fp16 adds 1 ms; fp16 → fp32 would add 2 more and pass T, so the walk stops at 16
    arch, moves = most_probable_in_band(space, pred.latency_ms, _peaked(space, low), low, 17.0, 0.99)
    assert arch == {**low, "layer1.ffn.bits": 16} and pred.latency_ms(arch) == pytest.approx(16.0) and len(moves) == 1
    start = {**space.full(), "layer1.ffn": 32}  # 16 ms
    assert most_probable_in_band(space, pred.latency_ms, _peaked(space, start), start, 17.0, 0.9) == (start, [])
    with pytest.raises(ConfigError, match="above T"):
        most_probable_in_band(space, pred.latency_ms, _peaked(space, start), start, 15.0, 0.9)
    with pytest.raises(ConfigError, match="band_low"):
        most_probable_in_band(space, pred.latency_ms, _peaked(space, start), start, 17.0, 1.0)


def test_band_fill_only_grows(tiny_table, tmp_path):
    from tests.trainers.conftest import table_ms, write_table
    from trainers.feasible import most_probable_in_band

    space = load_space("tiny-bert")
    start = {**space.full(), "layer1.ffn.bits": 16}  # layer 1's FFN at 2 ms instead of 4: 16 ms
    # the distribution is split between 16- and 4-bit FFN weights in layer 1, and dislikes 32
    lp = _peaked(space, start, {"layer1.ffn.bits": {32: -10.0, 16: -0.7, 8: -10.0, 4: -0.7}})
    # a device where 4-bit kernels run 5x slower (int4 MatMulNBits on VNNI is slower than int8): 16 → 4 bits
    # would add 0.5 ms at no probability cost, but it loses capacity, so the walk takes 16 → 32 instead
    slow4 = lambda key: table_ms(key) * (5.0 if key.endswith("bits=4") else 1.0)  # noqa: E731
    pred = Predictor(load_table(write_table(space, tmp_path / "slow4.json", ms=slow4)), space)
    assert pred.latency_ms({**start, "layer1.ffn.bits": 4}) == pytest.approx(pred.latency_ms(start) + 0.5)
    arch, moves = most_probable_in_band(space, pred.latency_ms, lp, start, 18.0, 0.99)
    assert arch == space.full() and len(moves) == 1 and "layer1.ffn.bits 16→32" in moves[0]
