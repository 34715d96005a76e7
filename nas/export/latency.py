"""Export's latency re-measurement: ``model.quant.onnx`` timed for every latency the trial was priced by.

A trial priced by one table (``latency_ms``) gets one ``latency`` check; a decoder trial
priced per phase (``ttft_ms`` by a prefill table, ``tpot_ms`` by a decode table,
:mod:`nas.latency.budgets`) gets one check per budget, named ``latency.<budget>``, each
measured with its own table's backend, threads, shape and protocol
(:func:`nas.export.verify.check_latency`, :func:`nas.export.verify_decoder.check_phase_latency`).
:func:`measured_latencies` turns the checks into the manifest's ``latency`` field:
``{budget: {predicted_ms, measured_ms, iqr_ms, error, ...}}``, and ``request_ms`` when the
trial had a request profile (``output_tokens``).

Every table the trial recorded is located by its sha256 before anything is written, and
the tables must agree on the int4 ``accuracy_level`` (one exported graph serves both phases).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from nas.errors import LatencyTableError, LatencyTableMismatchError
from nas.latency.budgets import LATENCY, REQUEST, TABLE_PHASES, TPOT, TTFT, request_ms


def _log(log: TextIO | None, line: str) -> None:
    if log is not None:
        print(line, file=log, flush=True)


def recorded_tables(user_attrs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{budget: recorded table entry}`` of a trial: its ``latency_tables``, else ``{"latency_ms": latency_table}``."""
    from nas.search import attrs as A

    per_budget = user_attrs.get(getattr(A, "LATENCY_TABLES", "latency_tables")) or {}
    if per_budget:
        return {b: dict(per_budget[b]) for b in TABLE_PHASES if b in per_budget}
    return {LATENCY: dict(user_attrs.get(A.LATENCY_TABLE) or {})}


def trial_tables(ref: Any, log: TextIO | None = None) -> dict[str, Any]:
    """The tables the trial searched with, ``{budget: LatencyTable}``, each by its recorded sha256.

    Looks beside the trial's subnet, among installed tables and in the study's artifact store
    (:func:`nas.search.tables.trial_table`).

    Raises:
        LatencyTableError: a budget records no table, or no table has its recorded hash (``trial N: budget: ...``).
        LatencyTableMismatchError: a ``ttft_ms`` table that is not a prefill table, or a ``tpot_ms`` one not decode.
    """
    import tempfile

    from nas.latency.table import check_phase
    from nas.search import attrs as A
    from nas.search.tables import fetch_study_table, trial_table

    out: dict[str, Any] = {}
    for budget, info in recorded_tables(ref.attrs).items():
        where = info.get("path") or info.get("id")
        if not where and not info.get("sha256"):
            raise LatencyTableError(f"latency_table: trial {ref.number} records no latency table "
                                    "(use measure_latency=False)")
        if not info.get("sha256"):
            _log(log, f"warning: trial {ref.number} records no latency-table sha256; loading {where!r} by path, "
                      "which may not be the table its search used")
        try:
            with tempfile.TemporaryDirectory(prefix="nas-table-") as d:
                extra: tuple[Path, ...] = ()
                if info.get("sha256") and ref.study_tables and ref.artifact_store:
                    from nas.search.artifacts import get_store

                    got = fetch_study_table(ref.study_tables, get_store(ref.artifact_store), info["sha256"], d)
                    extra = (got,) if got is not None else ()
                table = trial_table(info, subnet_dir=ref.attrs.get(A.SUBNET_DIR), extra_dirs=extra)
        except LatencyTableError as e:
            where = "" if budget == LATENCY else f"{budget}: "
            raise LatencyTableError(f"trial {ref.number}: {where}{e}") from None
        if budget in TABLE_PHASES:
            check_phase(table, TABLE_PHASES[budget])
        out[budget] = table
    accuracy_level(out)
    return out


def accuracy_level(tables: Mapping[str, Any]) -> int | None:
    """The ``MatMulNBits`` accuracy_level the tables priced int4 with (None: none recorded, or no table).

    Raises:
        LatencyTableMismatchError: two tables priced int4 at different levels (one graph cannot match both).
    """
    from nas.latency.table import table_accuracy_level

    levels = {b: table_accuracy_level(t) or None for b, t in tables.items()}
    found = {v for v in levels.values() if v is not None}
    if len(found) > 1:
        raise LatencyTableMismatchError(
            "accuracy_level: the trial's tables priced int4 at different levels ("
            + ", ".join(f"{b} {levels[b]}" for b in levels) + "); one exported graph serves every phase")
    return found.pop() if found else None


def check_name(budget: str, tables: Mapping[str, Any]) -> str:
    """``latency`` for a trial priced by one table, ``latency.<budget>`` per budget otherwise."""
    return "latency" if budget == LATENCY and len(tables) == 1 else f"latency.{budget}"


def latency_checks(directory: str | Path, subnet: Any, tables: Mapping[str, Any], *,
                   tolerance: float | None = None, references: int = 0, log: TextIO | None = None) -> list[Any]:
    """One re-measurement of ``model.quant.onnx`` per table (module docstring), in ``tables``' order.

    ``references`` of each table's calibration models are measured in the same rounds: the check's value
    is then the reference-normalised error, the raw one beside it (:func:`nas.export.verify.check_latency`).
    """
    from nas.export.artifacts import QUANT
    from nas.export.verify import Check, check_latency
    from nas.latency import latency_ms

    directory = Path(directory)
    checks = []
    for budget, table in tables.items():
        if subnet.space.dims.family == "llama":
            from nas.export.verify_decoder import check_phase_latency

            c = check_phase_latency(directory, subnet, table, tolerance=tolerance, references=references)
        else:
            c = check_latency(directory / QUANT, table, latency_ms(table, subnet.space, subnet.arch), subnet.space,
                              tolerance=tolerance, references=references)
        name = check_name(budget, tables)
        checks.append(Check(name, c.ok, c.value, c.limit, c.detail, {**c.data, "budget": budget}))
        _log(log, f"check {name}: {c.detail}")
    return checks


def measured_latencies(checks: Any, *, output_tokens: int = 0) -> dict[str, dict[str, Any]]:
    """The manifest's ``latency`` field from the latency checks: per budget the prediction beside the measurement.

    ``request_ms`` (``ttft_ms + output_tokens·tpot_ms``, predicted and measured) is added when both phases
    were measured and ``output_tokens > 0``.
    """
    keys = ("predicted_ms", "median_ms", "iqr_ms", "relative_error", "table", "phase", "threads", "batch", "seq",
            "context", "reference_ratio", "normalised_error")
    out: dict[str, dict[str, Any]] = {}
    for c in checks:
        budget = c.data.get("budget") if c.name.startswith("latency") else None
        if budget is None:
            continue
        d = {k: c.data[k] for k in keys if k in c.data}
        d["measured_ms"] = d.pop("median_ms", None)
        out[budget] = d
    if output_tokens > 0 and TTFT in out and TPOT in out:
        t, p = out[TTFT], out[TPOT]
        out[REQUEST] = {"output_tokens": output_tokens,
                        "predicted_ms": request_ms(t["predicted_ms"], p["predicted_ms"], output_tokens),
                        "measured_ms": request_ms(t["measured_ms"], p["measured_ms"], output_tokens)}
    return out
