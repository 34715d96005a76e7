import math

import pytest
import torch

from nas.supernet.gumbel import gumbel_softmax, tau


def test_tau_schedules_endpoints_and_shape():
    assert tau(0, 100) == pytest.approx(5.0)
    assert tau(99, 100) == pytest.approx(0.2)
    assert tau(50, 101, schedule="linear", tau0=1.0, tau_min=0.0) == pytest.approx(0.5)
    # exponential: geometric mean at the midpoint
    assert tau(50, 101, tau0=4.0, tau_min=1.0) == pytest.approx(2.0)
    assert tau(10, 20, schedule="constant", tau0=3.0) == 3.0
    with pytest.raises(ValueError, match="cosine"):
        tau(0, 10, schedule="cosine")


def test_hard_sample_is_one_hot_with_soft_gradient():
    logits = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    g = torch.Generator().manual_seed(0)
    y = gumbel_softmax(logits, 1.0, hard=True, generator=g)
    assert sorted(y.tolist()) == [0.0, 0.0, 1.0]
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_low_temperature_follows_logits():
    logits = torch.tensor([0.0, math.log(9.0)])
    g = torch.Generator().manual_seed(0)
    picks = sum(int(gumbel_softmax(logits, 1.0, hard=True, generator=g)[1]) for _ in range(2000))
    assert 0.87 < picks / 2000 < 0.93  # P = 0.9 for Gumbel-max
