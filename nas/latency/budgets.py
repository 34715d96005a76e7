"""Latency objectives: one label per latency a study prices, and the table phase each one reads.

A study of an encoder (or a decoder priced in one phase) has one latency, ``latency_ms``,
priced by its one table. A decoder study can price both phases a chat user feels, each by
its own table (:mod:`nas.latency.table`, ``phase``):

* ``ttft_ms`` – time to first token: the prefill of the table's ``seq`` prompt tokens;
* ``tpot_ms`` – time per output token: one decode step after the table's ``context`` cached tokens;
* ``request_ms`` – one request end to end, ``ttft_ms + output_tokens · tpot_ms`` (a request
  profile; needs both tables).

These labels are the keys everywhere: experiment files (``latency_tables:``, ``objectives:``,
``target_fractions:``), trial configs, trial metrics, Optuna objective names, ``nas pareto
--max NAME=VALUE`` and export manifests.

Example:
    >>> request_ms(100.0, 20.0, 64)
    1380.0
    >>> TABLE_PHASES["tpot_ms"]
    'decode'
"""

from __future__ import annotations

from nas.errors import ConfigError

LATENCY = "latency_ms"
TTFT = "ttft_ms"
TPOT = "tpot_ms"
REQUEST = "request_ms"
LATENCY_OBJECTIVES = (LATENCY, TTFT, TPOT, REQUEST)
TABLE_PHASES = {TTFT: "prefill", TPOT: "decode"}  # the budgets one table prices, and that table's phase


def request_ms(ttft: float, tpot: float, output_tokens: int) -> float:
    """One request end to end: the prefill, then ``output_tokens`` decode steps (linear, so exact in expectation)."""
    return ttft + output_tokens * tpot


def check_table_budgets(names) -> None:
    """Raise unless every name is a budget that one table prices (``ttft_ms``, ``tpot_ms``).

    Raises:
        ConfigError: ``latency_tables: <name>: ...`` naming the known budgets.
    """
    for name in names:
        if name not in TABLE_PHASES:
            raise ConfigError(f"latency_tables: {name!r} is not a latency one table prices; "
                              f"known: {', '.join(TABLE_PHASES)}")
