"""Latency penalties, the dual-ascent update of λ, and distillation losses.

Every penalty returns ``(loss, details)``; ``details`` (floats) is what gets
logged and stored in ``SearchResult.history``. With ``E = E[LAT]`` (ms) and
target ``T`` (ms):

* ``hinge`` (default): ``task + λ·max(0, E − T)/T``;
* ``fbnet``: ``task · α·(log E)^β`` (FBNet's multiplicative form; ``log E`` is
  clamped at 1e-6 so that sub-millisecond tables stay defined; λ is not used);
* ``linear``: ``task + λ·E/T`` (ProxylessNAS-style additive);
* ``band``: ``task + λ·(max(0, E − T) + max(0, b·T − E))/T``: the hinge plus
  its mirror below ``b·T`` (``band_low`` b, 0.9 by default), so the search
  spends the budget it is given instead of falling into the smallest corner
  of the space. The search values it at the latency of the argmax
  architecture (what derive takes): with keep probabilities near ½, E[LAT]
  can meet T while the argmax drops most layers.

An optional size hinge adds ``w_s·max(0, S − S_T)/S_T`` on the expected size S.

Several budgets at once (a decoder's TTFT and TPOT): :func:`budget_penalties`
adds one penalty per budget, each with its own λ, updated by :func:`dual_ascent`
on its own violation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from nas.errors import ConfigError

PENALTIES = ("hinge", "fbnet", "linear", "band")


def latency_penalty(
    form: str,
    task: Tensor,
    expected_ms: Tensor,
    target_ms: float,
    *,
    lmbda: float = 1.0,
    alpha: float = 0.2,
    beta: float = 0.6,
    band_low: float = 0.9,
    expected_size: Tensor | None = None,
    size_target: float | None = None,
    size_weight: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """The latency-penalized loss of one architecture step.

    Args:
        form: ``hinge``, ``fbnet``, ``linear`` or ``band`` (see module docstring).
        task: the task (or distillation) loss, a scalar.
        expected_ms: E[LAT] in ms, differentiable in the architecture probabilities.
        target_ms: the budget T (> 0).
        lmbda: penalty weight λ (hinge, linear).
        alpha, beta: FBNet constants.
        band_low: lower edge of ``band``'s target band, as a fraction of T (0 < b < 1).
        expected_size, size_target, size_weight: optional size hinge.

    Returns:
        ``(loss, details)`` with details ``task``, ``expected_ms``, ``ratio`` (E/T),
        ``penalty``, ``lambda`` and ``loss`` (and ``expected_size``, ``size_penalty``).

    Raises:
        ConfigError: unknown ``form`` or ``target_ms <= 0``.
    """
    if form not in PENALTIES:
        raise ConfigError(f"loss: unknown loss form {form!r}; known: {', '.join(PENALTIES)}")
    if not target_ms > 0:
        raise ConfigError(f"target_ms: must be > 0, got {target_ms}")
    if form == "hinge":
        penalty = lmbda * torch.clamp(expected_ms - target_ms, min=0.0) / target_ms
        loss = task + penalty
    elif form == "band":
        if not 0.0 < band_low < 1.0:
            raise ConfigError(f"band_low: must be in (0, 1), got {band_low}")
        excess = torch.clamp(expected_ms - target_ms, min=0.0) + torch.clamp(band_low * target_ms - expected_ms, min=0.0)
        penalty = lmbda * excess / target_ms
        loss = task + penalty
    elif form == "linear":
        penalty = lmbda * expected_ms / target_ms
        loss = task + penalty
    else:
        factor = alpha * torch.clamp(torch.log(expected_ms), min=1e-6) ** beta
        loss = task * factor
        penalty = loss - task
    details = {
        "task": _f(task), "expected_ms": _f(expected_ms), "ratio": _f(expected_ms) / target_ms,
        "penalty": _f(penalty), "lambda": float(lmbda),
    }
    loss = add_size_penalty(loss, details, expected_size=expected_size, size_target=size_target,
                            size_weight=size_weight)
    details["loss"] = _f(loss)
    return loss, details


def add_size_penalty(loss: Tensor, details: dict[str, float], *, expected_size: Tensor | None = None,
                     size_target: float | None = None, size_weight: float = 0.0) -> Tensor:
    """``loss + w_s·max(0, S − S_T)/S_T`` (when ``size_weight`` > 0 and a size is given); logs
    ``expected_size`` and ``size_penalty`` into ``details`` (not ``loss``: the caller's)."""
    if size_weight > 0 and expected_size is not None and size_target:
        size_pen = size_weight * torch.clamp(expected_size - size_target, min=0.0) / size_target
        details.update(expected_size=_f(expected_size), size_penalty=_f(size_pen))
        return loss + size_pen
    return loss


ADDITIVE = ("hinge", "linear", "band")  # the forms whose penalties add up over several budgets


def budget_penalties(
    form: str,
    task: Tensor,
    expected_ms: Mapping[str, Tensor],
    targets_ms: Mapping[str, float],
    lambdas: Mapping[str, float],
    *,
    band_low: float = 0.9,
) -> tuple[Tensor, dict[str, float]]:
    """The loss of one architecture step under several latency budgets at once (e.g. TTFT and TPOT).

    ``task + Σ_b penalty_b``, each budget ``b`` (a latency objective such as
    ``ttft_ms``) priced by :func:`latency_penalty`'s ``form`` with its own
    ``E_b``, ``T_b`` and ``λ_b``; one budget gives :func:`latency_penalty`'s loss.

    Args:
        form: ``hinge``, ``linear`` or ``band`` (additive forms; ``fbnet``'s factor takes one budget).
        task: the task (or distillation) loss, a scalar.
        expected_ms: ``{budget: E[LAT_b]}``, differentiable in the architecture probabilities.
        targets_ms: ``{budget: T_b}`` (> 0), the same names.
        lambdas: ``{budget: λ_b}``, the same names.
        band_low: ``band``'s lower edge as a fraction of each ``T_b``.

    Returns:
        ``(loss, details)``: ``task``, ``penalty`` (the sum), ``loss``, and per budget
        ``{b}.expected_ms``, ``{b}.ratio``, ``{b}.penalty``, ``{b}.lambda``.

    Raises:
        ConfigError: no budget, names that differ between the mappings, or a form that does not add up.
    """
    names = list(targets_ms)
    if not names:
        raise ConfigError("budgets: no latency budget given")
    for what, m in (("expected_ms", expected_ms), ("lambdas", lambdas)):
        if set(m) != set(names):
            raise ConfigError(f"budgets: {what} names {sorted(m)} differ from the targets' {sorted(names)}")
    if len(names) > 1 and form not in ADDITIVE:
        raise ConfigError(f"loss: {form!r} prices one budget; with {len(names)} budgets use {', '.join(ADDITIVE)}")
    zero = torch.zeros((), dtype=task.dtype, device=task.device)
    penalty = zero
    details: dict[str, float] = {}
    for b in names:
        pen, d = latency_penalty(form, zero, expected_ms[b], targets_ms[b], lmbda=lambdas[b], band_low=band_low)
        penalty = penalty + pen
        details.update({f"{b}.expected_ms": d["expected_ms"], f"{b}.ratio": d["ratio"],
                        f"{b}.penalty": d["penalty"], f"{b}.lambda": d["lambda"]})
    loss = task + penalty
    return loss, {"task": _f(task), "penalty": _f(penalty), "loss": _f(loss), **details}


def _f(t: Tensor | float) -> float:
    return float(t.detach()) if isinstance(t, Tensor) else float(t)


def band_violation(latency_ms: float, target_ms: float, band_low: float) -> float:
    """``band``'s constraint violation: the relative distance outside ``[b·T, T]`` (> 0 outside, ≤ 0 inside).

    Inside the band it is the (negative) distance to the nearer edge, so λ decays there
    by dual ascent as it does under the hinge once the budget is met.
    """
    return max(latency_ms - target_ms, band_low * target_ms - latency_ms) / target_ms


def dual_ascent(lmbda: float, violation: float, lr: float) -> float:
    """One projected dual-ascent step on the constraint ``violation <= 0``: ``max(0, λ + lr·violation)``.

    ``violation`` is the relative excess ``(LAT − T)/T``: λ grows while the
    budget is exceeded and shrinks (never below 0) once it is met.
    """
    return max(0.0, lmbda + lr * violation)


def kd_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton distillation: ``KL(softmax(t/τ) ‖ softmax(s/τ))·τ²``, mean over the batch; in fp32 whatever the
    logits' dtype (bf16 logits of an autocast step round the two distributions apart: a KL below 0)."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student_logits.float() / t, -1), F.log_softmax(teacher_logits.float() / t, -1), log_target=True,
        reduction="batchmean",
    ) * (t * t)


def hidden_mse(student: Tensor, teacher: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean squared error of hidden states over non-padding tokens (in fp32)."""
    student, teacher = student.float(), teacher.float()
    m = attention_mask.unsqueeze(-1).to(student.dtype)
    return ((student - teacher) ** 2 * m).sum() / (m.sum() * student.shape[-1]).clamp(min=1.0)


def cosine_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """``1 − mean cos(student, teacher)`` of pooled sentence embeddings (no labels needed)."""
    return 1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=-1).mean()
