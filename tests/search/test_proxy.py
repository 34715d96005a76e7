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


def test_grouped_tau_counts_only_pairs_within_a_group():
    # group a: (1,10),(2,20) concordant; group b: (3,5),(4,1) discordant; across-group pairs ignored
    assert kendall_tau_b([1, 2, 3, 4], [10, 20, 5, 1], groups=["a", "a", "b", "b"]) == 0.0
    assert kendall_tau_b([1, 2, 3, 4], [10, 20, 5, 1]) == pytest.approx(-4 / 6)  # 1 concordant, 5 discordant
    with pytest.raises(ValueError, match="differ in length"):
        kendall_tau_b([1, 2], [1, 2], groups=[0])


def test_same_budget_tau_takes_the_budget_out():
    # the proxy ranks perfectly within each budget, but long fine-tuning lifts every low-budget subnet's rank
    pairs = [(0.1, 0.50), (0.2, 0.51), (0.3, 0.52), (0.05, 0.60), (0.15, 0.61), (0.25, 0.62)]
    budgets = [20, 20, 20, 150, 150, 150]
    a = proxy_agreement(pairs, budgets)
    assert a["kendall_tau_same_budget"] == 1.0 and a["kendall_tau"] < 0.5 and a["budget_median"] == 85
    assert "kendall_tau_same_budget" not in proxy_agreement(pairs, [300] * 6)  # one budget: τ says it all
    with pytest.raises(ValueError, match="budgets has 2 values for 6 pairs"):
        proxy_agreement(pairs, [1, 2])
