"""Kendall τ between inherited-weights and fine-tuned quality (:mod:`nas.search.proxy`)."""

import math
import random

import pytest
from scipy.stats import kendalltau

from nas.search.proxy import kendall_tau_b, proxy_agreement


def test_hand_counted_pairs():
    # x ranks 1,2,3,4; y swaps the last two: 6 pairs, 5 concordant, 1 discordant -> (5 - 1) / 6
    assert kendall_tau_b([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(4 / 6)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == -1.0
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))  # no ranking in x


def test_matches_scipy_with_ties():
    rng = random.Random(0)
    for _ in range(20):
        x = [rng.choice([0.1, 0.2, 0.3, 0.4]) for _ in range(12)]
        y = [rng.choice([0.5, 0.6, 0.7]) for _ in range(12)]
        assert kendall_tau_b(x, y) == pytest.approx(kendalltau(x, y).statistic)


def test_agreement_skips_nan_and_needs_three_trials():
    assert proxy_agreement([(0.1, 0.5), (float("nan"), 0.6), (0.3, 0.7), (0.2, 0.9)]) == {
        "kendall_tau": pytest.approx(1 / 3), "trials": 3}
    short = proxy_agreement([(0.1, 0.5), (0.2, 0.6)])
    assert short["trials"] == 2 and math.isnan(short["kendall_tau"])
