"""The latencies one trial prices, by name: one latency-table predictor per budget, and the request profile.

Labels and phases are :mod:`nas.latency.budgets`'; the search (:mod:`trainers.search`), the
target checks and derive (:mod:`trainers.pipeline`) read every latency through
:class:`BudgetPricing`.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from nas.errors import ConfigError
from nas.latency.budgets import LATENCY, REQUEST, TPOT, TTFT, request_ms
from nas.latency.predictor import Predictor
from nas.spaces.choice import layer_label


class BudgetPricing:
    """The latencies one trial prices, by name (:mod:`nas.latency.budgets`): one predictor per table.

    ``latency_ms`` (one table), ``ttft_ms`` (a prefill table) and ``tpot_ms`` (a decode table) are each
    their predictor's; ``request_ms = ttft_ms + output_tokens·tpot_ms`` is priced when both tables are
    given and ``output_tokens`` > 0 (linear in the tables, so ``E[request] = E[TTFT] + n·E[TPOT]``
    exactly, and its smallest architecture is found as a table's is).

    Args:
        predictors: ``{budget: Predictor}``, budgets among ``latency_ms``, ``ttft_ms``, ``tpot_ms``, one space.
        output_tokens: the request profile's generated tokens.

    Raises:
        ConfigError: no predictor, an unknown budget, or predictors of different spaces.

    Example:
        >>> from nas.latency import load_table
        >>> from nas.spaces import load_space
        >>> space = load_space("tiny-llama")
        >>> tables = {"ttft_ms": "tiny-llama.onnxruntime-cpu.t1.b1.s32",
        ...           "tpot_ms": "tiny-llama.onnxruntime-cpu.t1.b1.c32.decode"}
        >>> pricing = BudgetPricing({b: Predictor(load_table(t), space) for b, t in tables.items()}, output_tokens=64)
        >>> pricing.names
        ('ttft_ms', 'tpot_ms', 'request_ms')
        >>> ms = pricing.latencies(space.full())
        >>> ms["request_ms"] == ms["ttft_ms"] + 64 * ms["tpot_ms"]
        True
    """

    def __init__(self, predictors: Mapping[str, Predictor], *, output_tokens: int = 0) -> None:
        if not predictors:
            raise ConfigError("latency_tables: no latency table given")
        order = (LATENCY, TTFT, TPOT)
        unknown = [b for b in predictors if b not in order]
        if unknown:
            raise ConfigError(f"latency_tables: {unknown[0]!r} is not a latency one table prices; "
                              f"known: {', '.join(order)}")
        self.predictors = {b: predictors[b] for b in order if b in predictors}
        spaces = {p.space.hash for p in self.predictors.values()}
        if len(spaces) > 1:
            raise ConfigError("latency_tables: the tables price different spaces")
        self.space = next(iter(self.predictors.values())).space
        self.output_tokens = int(output_tokens)
        self.names: tuple[str, ...] = tuple(self.predictors)
        if self.output_tokens > 0 and TTFT in self.predictors and TPOT in self.predictors:
            self.names += (REQUEST,)

    def check(self, budget: str) -> None:
        """Raise :class:`ConfigError` unless ``budget`` is a latency this trial prices."""
        if budget not in self.names:
            raise ConfigError(f"{budget}: not a latency this trial prices ({', '.join(self.names)})")

    def latency_ms(self, budget: str, arch: Mapping[str, int]) -> float:
        """``arch``'s predicted latency under ``budget``, in ms."""
        self.check(budget)
        if budget == REQUEST:
            p = self.predictors
            return request_ms(p[TTFT].latency_ms(arch), p[TPOT].latency_ms(arch), self.output_tokens)
        return self.predictors[budget].latency_ms(arch)

    def latencies(self, arch: Mapping[str, int]) -> dict[str, float]:
        """``{budget: ms}`` of ``arch`` under every priced latency (each table read once)."""
        out = {b: p.latency_ms(arch) for b, p in self.predictors.items()}
        if REQUEST in self.names:
            out[REQUEST] = request_ms(out[TTFT], out[TPOT], self.output_tokens)
        return out

    def expected_ms(self, probs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``{budget: E[LAT_b]}`` under per-label probabilities, differentiable (every priced latency)."""
        out = {b: p.expected_latency(probs) for b, p in self.predictors.items()}
        if REQUEST in self.names:
            out[REQUEST] = request_ms(out[TTFT], out[TPOT], self.output_tokens)
        return out

    def full_ms(self, budget: str) -> float:
        """The full model's latency under ``budget``."""
        return self.latency_ms(budget, self.space.full())

    def min_ms(self, budget: str) -> float:
        """The lowest latency under ``budget`` any architecture of the space can reach."""
        self.check(budget)
        if budget != REQUEST:
            return self.predictors[budget].min_latency_ms()
        return _min_linear([(self.predictors[TTFT], 1.0), (self.predictors[TPOT], float(self.output_tokens))])

    def source(self, budget: str) -> str:
        """Where ``budget``'s latency comes from, for messages (``table <id>`` or the request formula)."""
        self.check(budget)
        if budget == REQUEST:
            p = self.predictors
            return f"{TTFT} + {self.output_tokens}·{TPOT}, tables {p[TTFT].table.id} and {p[TPOT].table.id}"
        return f"table {self.predictors[budget].table.id}"


def _min_linear(terms: list[tuple[Predictor, float]]) -> float:
    """The smallest ``Σ w·LAT_p(arch)`` over the space (:meth:`Predictor.min_latency_ms` for one table, weight 1).

    Every table prices the same blocks of one space and each is a sum over blocks, so the weighted sum
    is one too: each layer's cheapest (heads, bits) and (width, bits) under the weighted entries, the
    forced layers paid for (one layer kept if all can be skipped), the cheapest embedding.
    """
    space = terms[0][0].space
    n = space.dims.num_layers
    fixed = sum(w * (p.fixed + p.constant) for p, w in terms)
    embed = float(sum(w * p.embed for p, w in terms).min())
    cost = [float(sum(w * p.attn[i] for p, w in terms).min()) + float(sum(w * p.ffn[i] for p, w in terms).min())
            + sum(w * p.per_layer for p, w in terms) for i in range(n)]
    forced = [cost[i] for i in range(n) if 0 not in space.options(layer_label(i, "keep"))]
    return fixed + embed + (sum(forced) if forced else min(cost))
