"""The fine-tuning learning-rate schedule (:func:`trainers.finetune.lr_factor`)."""

import pytest

from trainers.finetune import lr_factor


@pytest.mark.parametrize("steps", [1, 7, 30, 300])
def test_cosine_warms_up_peaks_once_and_decays_toward_zero(steps):
    f = [lr_factor("cosine", s, steps) for s in range(steps)]
    warm = max(1, steps // 10)
    assert f[:warm] == pytest.approx([(s + 1) / warm for s in range(warm)])  # linear warm-up to the peak
    assert max(f) == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[warm - 1:], f[warm:]))  # then never rises
    if steps > 1:
        assert f[-1] <= 0.06  # a short fine-tune ends at a small learning rate
    assert all(0 < x <= 1 for x in f)


def test_constant_is_the_peak_throughout_and_an_unknown_schedule_is_refused():
    assert {lr_factor("constant", s, 50) for s in range(50)} == {1.0}
    with pytest.raises(ValueError, match="finetune_schedule"):
        lr_factor("linear", 0, 10)
