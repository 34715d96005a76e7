"""What one search trial returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SearchResult:
    """The outcome of :func:`trainers.search_once`.

    Attributes:
        arch: the chosen architecture ``{label: choice}`` (after the feasibility rule).
        arch_summary: its one-line summary (``nas.spaces.format_arch``).
        latency_ms: the predicted latency of ``arch`` under ``config.latency_table``.
        target_ms: the budget T the search ran against (with several budgets: ``latency_ms``'s
            budget's if it is constrained, else the first budget's).
        feasible: every budget holds (``latencies[b] <= targets[b]``; one table: ``latency_ms <= target_ms``);
            ``argmax_latency_ms`` is what the raw argmax had (under ``config.latency_table``) before the
            feasibility rule was applied.
        size_bytes, params: of the derived subnet at its chosen bit-widths.
        metric: ``accuracy``, ``cosine`` or ``choice_accuracy`` (definition → word); ``quality_before``/``quality_after``
            its value on the test split before/after fine-tuning;
            ``teacher_quality`` the teacher's.
        history: one details dict per logged step (step, tau, task loss,
            E[LAT], λ, penalty, ...).
        phase_seconds: wall time of each phase (teacher, search, derive, finetune, eval).
        metrics: the task's further measurements (e.g. ``perplexity_before``, ``perplexity_after``,
            ``teacher_perplexity``); ``to_dict`` lists them next to the other fields.
        latencies: every latency the trial's tables price for ``arch`` (:mod:`nas.latency.budgets`):
            ``latency_ms`` always, and with ``latency_tables`` ``ttft_ms``, ``tpot_ms`` and (with
            ``output_tokens``) ``request_ms``; ``to_dict`` lists each at the top level, where the
            search service reads objective values.
        targets: ``{budget: T_b}`` of every budget the trial held ``arch`` to (``{"latency_ms": T}`` with one table).
        subnet: the fine-tuned :class:`nas.supernet.Subnet` (not serialised by ``to_dict``).
    """

    arch: dict[str, int]
    arch_summary: str
    latency_ms: float
    target_ms: float
    feasible: bool
    argmax_latency_ms: float
    size_bytes: int
    params: int
    metric: str
    quality_before: float
    quality_after: float
    teacher_quality: float
    history: list[dict[str, float]] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    latencies: dict[str, float] = field(default_factory=dict)
    targets: dict[str, float] = field(default_factory=dict)
    subnet: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:  # a one-table result (e.g. trainers.light) gives neither
        self.latencies = {"latency_ms": self.latency_ms, **self.latencies}
        if not self.targets:
            self.targets = {"latency_ms": self.target_ms}

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6

    def to_dict(self) -> dict[str, Any]:
        """Every field but ``subnet`` (JSON-ready): ``latencies``' entries and ``metrics``' flat at the top
        level, ``targets`` nested, plus ``size_mb``."""
        skip = ("subnet", "metrics", "latencies")
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        d.update(self.latencies)
        d["targets"] = dict(self.targets)
        d["size_mb"] = self.size_mb
        d.update({k: v for k, v in self.metrics.items() if k not in d})
        return d
