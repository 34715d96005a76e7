import math

import pytest
import torch

from nas.errors import ConfigError
from trainers.losses import band_violation, cosine_loss, dual_ascent, hidden_mse, kd_kl, latency_penalty


def test_hinge_matches_hand_computation_and_gradient():
    e = torch.tensor(15.0, requires_grad=True)
    loss, d = latency_penalty("hinge", torch.tensor(1.0), e, 10.0, lmbda=2.0)
    assert float(loss.detach()) == pytest.approx(1.0 + 2.0 * 5.0 / 10.0)  # task + λ·(E−T)/T = 2.0
    loss.backward()
    assert float(e.grad) == pytest.approx(2.0 / 10.0)  # λ/T
    assert d["penalty"] == pytest.approx(1.0) and d["ratio"] == pytest.approx(1.5) and d["lambda"] == 2.0


def test_hinge_is_inactive_below_target():
    e = torch.tensor(8.0, requires_grad=True)
    loss, d = latency_penalty("hinge", torch.tensor(0.7), e, 10.0, lmbda=5.0)
    assert float(loss) == pytest.approx(0.7) and d["penalty"] == 0.0
    loss.backward()
    assert float(e.grad) == 0.0


def test_linear_and_fbnet_forms():
    loss, _ = latency_penalty("linear", torch.tensor(1.0), torch.tensor(15.0), 10.0, lmbda=2.0)
    assert float(loss) == pytest.approx(1.0 + 2.0 * 1.5)
    # task·α·(log E)^β with E = e^4: 2 · 0.2 · 4^0.5 = 0.8
    loss, d = latency_penalty("fbnet", torch.tensor(2.0), torch.tensor(math.exp(4.0)), 10.0, alpha=0.2, beta=0.5)
    assert float(loss) == pytest.approx(0.8) and d["penalty"] == pytest.approx(0.8 - 2.0)


@pytest.mark.parametrize("e, penalty, grad", [(15.0, 2.0 * 5.0 / 10.0, 2.0 / 10.0),   # above T: the hinge
                                               (9.5, 0.0, 0.0),                          # inside [0.9·T, T]
                                               (6.0, 2.0 * 3.0 / 10.0, -2.0 / 10.0)])    # below 0.9·T: pulled up
def test_band_is_the_hinge_plus_its_mirror_below_the_band(e, penalty, grad):
    et = torch.tensor(e, requires_grad=True)
    loss, d = latency_penalty("band", torch.tensor(1.0), et, 10.0, lmbda=2.0, band_low=0.9)
    assert float(loss.detach()) == pytest.approx(1.0 + penalty) and d["penalty"] == pytest.approx(penalty)
    loss.backward()
    assert float(et.grad) == pytest.approx(grad)


def test_band_violation_is_the_distance_outside_the_band():
    assert band_violation(12.0, 10.0, 0.9) == pytest.approx(0.2)
    assert band_violation(6.0, 10.0, 0.9) == pytest.approx(0.3)
    assert band_violation(9.5, 10.0, 0.9) == pytest.approx(-0.05)  # inside: λ decays
    with pytest.raises(ConfigError, match="band_low"):
        latency_penalty("band", torch.tensor(1.0), torch.tensor(1.0), 1.0, band_low=1.0)


def test_size_penalty_adds_a_hinge_on_size():
    loss, d = latency_penalty("hinge", torch.tensor(1.0), torch.tensor(5.0), 10.0, expected_size=torch.tensor(12.0),
                              size_target=8.0, size_weight=0.5)
    assert float(loss) == pytest.approx(1.0 + 0.5 * 4.0 / 8.0) and d["size_penalty"] == pytest.approx(0.25)


def test_bad_form_and_target_are_config_errors():
    with pytest.raises(ConfigError, match="loss"):
        latency_penalty("quadratic", torch.tensor(1.0), torch.tensor(1.0), 1.0)
    with pytest.raises(ConfigError, match="target_ms"):
        latency_penalty("hinge", torch.tensor(1.0), torch.tensor(1.0), 0.0)


def test_dual_ascent_raises_lambda_while_violated_and_never_goes_negative():
    lam = 1.0
    for _ in range(3):
        new = dual_ascent(lam, 0.2, 0.5)
        assert new == pytest.approx(lam + 0.1)
        lam = new
    assert dual_ascent(0.05, -0.5, 0.5) == 0.0
    assert dual_ascent(1.0, -0.1, 1.0) == pytest.approx(0.9)


def test_distillation_losses():
    t = torch.tensor([[2.0, 0.0, -1.0]])
    assert float(kd_kl(t, t, 2.0)) == pytest.approx(0.0, abs=1e-7)
    s = torch.tensor([[0.0, 2.0, -1.0]])
    p, q = torch.softmax(t / 2, -1), torch.softmax(s / 2, -1)
    assert float(kd_kl(s, t, 2.0)) == pytest.approx(float((p * (p / q).log()).sum() * 4), rel=1e-5)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(cosine_loss(a, 3 * a)) == pytest.approx(0.0, abs=1e-7)
    assert float(cosine_loss(a, a.flip(0))) == pytest.approx(1.0)
    h = torch.zeros(1, 2, 2)
    mask = torch.tensor([[1, 0]])
    assert float(hidden_mse(h + torch.tensor([[[1.0, 1.0], [9.0, 9.0]]]), h, mask)) == pytest.approx(1.0)


# --- several budgets (a decoder's TTFT and TPOT), checked on paper -------------------------------------------
# one label with options (a, b), probabilities softmax(z); prefill table a = 10 ms, b = 4 ms; decode a = 2, b = 1.
# At z = 0: E[TTFT] = 7, E[TPOT] = 1.5; budgets T = 6 and 1.2, λ = 2 and 4 (hinge):
#   penalty = 2·(7 − 6)/6 + 4·(1.5 − 1.2)/1.2 = 1/3 + 1 = 4/3
#   ∂/∂z_a: p_a·p_b·(10 − 4) = 1.5 and p_a·p_b·(2 − 1) = 0.25, so 2/6·1.5 + 4/1.2·0.25 = 0.5 + 5/6 = 4/3
#   dual ascent at lr 0.6: λ_ttft = 2 + 0.6·(1/6) = 2.1, λ_tpot = 4 + 0.6·(0.3/1.2) = 4.15


def _two_phase(z):
    p = torch.softmax(z, -1)
    return {"ttft_ms": p @ torch.tensor([10.0, 4.0]), "tpot_ms": p @ torch.tensor([2.0, 1.0])}


def test_two_budgets_loss_gradient_and_dual_updates_on_paper():
    from trainers.losses import budget_penalties

    z = torch.zeros(2, requires_grad=True)
    expected = _two_phase(z)
    targets, lambdas = {"ttft_ms": 6.0, "tpot_ms": 1.2}, {"ttft_ms": 2.0, "tpot_ms": 4.0}
    loss, d = budget_penalties("hinge", torch.tensor(0.5), expected, targets, lambdas)
    assert loss.item() == pytest.approx(0.5 + 4 / 3)
    assert d["penalty"] == pytest.approx(4 / 3) and d["task"] == pytest.approx(0.5)
    assert d["ttft_ms.penalty"] == pytest.approx(1 / 3) and d["tpot_ms.penalty"] == pytest.approx(1.0)
    assert d["ttft_ms.ratio"] == pytest.approx(7 / 6) and d["tpot_ms.lambda"] == 4.0
    loss.backward()
    assert z.grad[0].item() == pytest.approx(4 / 3) and z.grad[1].item() == pytest.approx(-4 / 3)
    viol = {b: (float(expected[b]) - targets[b]) / targets[b] for b in targets}
    assert dual_ascent(lambdas["ttft_ms"], viol["ttft_ms"], 0.6) == pytest.approx(2.1)
    assert dual_ascent(lambdas["tpot_ms"], viol["tpot_ms"], 0.6) == pytest.approx(4.15)


def test_a_met_budget_adds_nothing_and_one_budget_is_latency_penalty():
    from trainers.losses import budget_penalties

    z = torch.zeros(2)
    loss, d = budget_penalties("hinge", torch.tensor(0.5), _two_phase(z), {"ttft_ms": 6.0, "tpot_ms": 2.0},
                               {"ttft_ms": 2.0, "tpot_ms": 4.0})
    assert d["tpot_ms.penalty"] == 0.0 and loss.item() == pytest.approx(0.5 + 1 / 3)
    for form in ("hinge", "band", "linear"):
        one, _ = budget_penalties(form, torch.tensor(0.5), {"ttft_ms": torch.tensor(7.0)}, {"ttft_ms": 6.0},
                                  {"ttft_ms": 2.0})
        ref, _ = latency_penalty(form, torch.tensor(0.5), torch.tensor(7.0), 6.0, lmbda=2.0)
        assert one.item() == pytest.approx(ref.item())


def test_budget_mismatches_are_typed_errors():
    from nas.errors import ConfigError
    from trainers.losses import budget_penalties

    e = _two_phase(torch.zeros(2))
    with pytest.raises(ConfigError, match="budgets: no latency budget"):
        budget_penalties("hinge", torch.tensor(0.0), {}, {}, {})
    with pytest.raises(ConfigError, match=r"lambdas names \['ttft_ms'\]"):
        budget_penalties("hinge", torch.tensor(0.0), e, {"ttft_ms": 6.0, "tpot_ms": 1.0}, {"ttft_ms": 1.0})
    with pytest.raises(ConfigError, match="'fbnet' prices one budget"):
        budget_penalties("fbnet", torch.tensor(0.0), e, {"ttft_ms": 6.0, "tpot_ms": 1.0},
                         {"ttft_ms": 1.0, "tpot_ms": 1.0})
