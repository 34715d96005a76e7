"""The latency tables a study searched with: stored with the study, found again by content hash.

Since the artifact store, the driver uploads the table as a study artifact
(:func:`store_study_table`: study user attribute ``latency_tables`` = ``{sha256: entry}``),
reachable from every node; export downloads it (:func:`fetch_study_table`) when neither the
recorded path nor an installed table holds that hash. The folder copies below serve studies
recorded before the artifact store.

A trial pins its table by :func:`nas.latency.table.table_sha256` (the ``sha256`` of its
:data:`nas.search.attrs.LATENCY_TABLE` attribute), never by a path: a path such as
``latency_luts/60ce96d48035/…json`` means another table from another working directory or
on another machine. The exact table a study searched with is stored beside its trial
subnets::

    <runs_dir>/<study>/trial-00000/      a trial's subnet (nas.search.worker)
    <runs_dir>/<study>/tables/<sha256>.json   the table, as LatencyTable.to_dict() JSON

This module is the one place that knows where those copies live (:func:`store_table_copy`
writes one, :func:`copy_dirs` says where to look given a trial's subnet folder) and how a
trial's recorded table is found again (:func:`trial_table`; :func:`trial_tables` for every
latency the trial was priced by, used by export).

A decoder trial priced per phase records one table per budget (:data:`nas.search.attrs.LATENCY_TABLES`,
``{"ttft_ms": entry, "tpot_ms": entry}``); the study stores each of them, so
:func:`trial_tables` finds them all the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas.errors import LatencyTableError
from nas.files import write_json_atomic
from nas.latency.budgets import LATENCY, TABLE_PHASES
from nas.latency.table import LatencyTable, find_table, load_table, table_sha256

TABLES_DIR = "tables"


def study_tables_dir(runs_dir: str | Path, study: str) -> Path:
    """``<runs_dir>/<study>/tables``: where a study's table copies live."""
    return Path(runs_dir) / study / TABLES_DIR


def copy_dirs(subnet_dir: str | Path | None) -> tuple[Path, ...]:
    """The copy folders of the study a trial's subnet folder (``<runs>/<study>/trial-NNNNN``) belongs to."""
    if not subnet_dir:
        return ()
    return (Path(subnet_dir).parent / TABLES_DIR,)


def store_table_copy(table: LatencyTable, runs_dir: str | Path, study: str) -> Path:
    """Store ``table`` with the study as ``<runs_dir>/<study>/tables/<sha256>.json``; idempotent.

    The file is written atomically and only when no valid copy is there yet (same hash, same
    file: concurrent trials may all call this). The written copy is read back and must hash to
    the table's own sha256.

    Returns:
        The copy's path.

    Raises:
        LatencyTableError: the written copy does not hash back to the table's sha256.

    Example:
        >>> import tempfile
        >>> from nas.latency.table import installed_tables
        >>> t = next(installed_tables())
        >>> store_table_copy(t, tempfile.mkdtemp(), "s").name == table_sha256(t) + ".json"
        True
    """
    sha = table_sha256(table)
    path = study_tables_dir(runs_dir, study) / f"{sha}.json"
    if path.is_file() and _hash_of(path) == sha:
        return path
    write_json_atomic(path, table.to_dict())
    got = _hash_of(path)
    if got != sha:
        path.unlink(missing_ok=True)
        raise LatencyTableError(f"{path}: the stored copy hashes to {got}, not {sha} (the table does not "
                                "round-trip through JSON)")
    return path


def _hash_of(path: Path) -> str | None:
    try:
        return table_sha256(load_table(path))
    except LatencyTableError:
        return None


STUDY_TABLES = "latency_tables"


def store_study_table(study: Any, store: Any, table: LatencyTable) -> dict[str, Any]:
    """Upload ``table`` as an artifact of ``study`` unless the study holds that hash already; its entry.

    The study user attribute :data:`STUDY_TABLES` maps each table's sha256 to its artifact entry.
    """
    import tempfile

    from nas.search.artifacts import record_artifacts, upload_files

    sha = table_sha256(table)
    known = dict(study.user_attrs.get(STUDY_TABLES) or {})
    if sha in known:
        return known[sha]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{sha}.json"
        write_json_atomic(path, table.to_dict())
        if _hash_of(path) != sha:
            raise LatencyTableError(f"{table.id}: the table does not round-trip through JSON (hash changes)")
        (entry,) = upload_files(store, [path])
    record_artifacts(study._storage, [entry], study_id=study._study_id)
    known[sha] = entry
    study.set_user_attr(STUDY_TABLES, known)
    return entry


def fetch_study_table(study_tables: Mapping[str, Any], store: Any, sha256: str, dest: str | Path) -> Path | None:
    """Download the study's artifact of table ``sha256`` into ``dest`` (its sha256 checked); None if it has none."""
    from nas.search.artifacts import download_files

    entry = (study_tables or {}).get(sha256)
    if not entry:
        return None
    return download_files(store, [entry], dest, what="latency table")


def trial_table(info: Mapping[str, Any], *, subnet_dir: str | Path | None = None,
                extra_dirs: tuple[Path, ...] = ()) -> LatencyTable:
    """The latency table a trial recorded (its :data:`nas.search.attrs.LATENCY_TABLE` attribute).

    By the recorded ``sha256`` (:func:`nas.latency.table.find_table`): the recorded path if it
    still holds that table, else an installed table, else the study's stored copy (beside
    ``subnet_dir``). A trial recorded before tables were pinned (no ``sha256``) is loaded by its
    recorded path or id, with a warning that this may not be the table its search used.

    Args:
        info: the trial's ``latency_table`` attribute.
        subnet_dir: the trial's ``subnet_dir`` attribute (locates the study's copies).

    Raises:
        LatencyTableError: no recorded table; no table with the recorded hash (the message names it
            and the hash the recorded path holds instead).
    """
    hint = info.get("path") or info.get("id")
    sha = info.get("sha256")
    if not sha:
        if not hint:
            raise LatencyTableError("latency_table: the trial records no latency table")
        warnings.warn(f"latency_table: the trial records no sha256 (recorded before tables were pinned by hash); "
                      f"loading {hint!r} by path, which may resolve to another table than the search used",
                      UserWarning, stacklevel=2)
        return load_table(hint)
    dirs = [Path(info["copy"]).parent] if info.get("copy") else []
    dirs += [d for d in (*copy_dirs(subnet_dir), *map(Path, extra_dirs)) if d not in dirs]
    return find_table(str(sha), extra_dirs=dirs, hint=hint)


def trial_tables(user_attrs: Mapping[str, Any], *, subnet_dir: str | Path | None = None,
                 extra_dirs: tuple[Path, ...] = ()) -> dict[str, LatencyTable]:
    """Every latency table a trial was priced by, ``{latency objective: table}``, each found by :func:`trial_table`.

    A trial priced per phase (its :data:`nas.search.attrs.LATENCY_TABLES` attribute) gives
    ``{"ttft_ms": table, "tpot_ms": table}`` (budget order of :data:`nas.latency.budgets.TABLE_PHASES`);
    any other trial ``{"latency_ms": table}`` (its :data:`nas.search.attrs.LATENCY_TABLE`).

    Args:
        user_attrs: the trial's user attributes.
        subnet_dir: the trial's ``subnet_dir`` attribute (locates the study's copies); default: from ``user_attrs``.
        extra_dirs: more folders to look in (e.g. the study's artifacts downloaded there).

    Raises:
        LatencyTableError: a table that cannot be found (``<budget>: ...`` for a per-phase trial).

    Example:
        >>> from nas.latency.table import load_table
        >>> t = load_table("tiny-llama.onnxruntime-cpu.t1.b1.s32")
        >>> list(trial_tables({"latency_table": {"path": t.path, "sha256": table_sha256(t)}}))
        ['latency_ms']
    """
    from nas.search import attrs

    subnet_dir = subnet_dir if subnet_dir is not None else user_attrs.get(attrs.SUBNET_DIR)
    per_budget = user_attrs.get(attrs.LATENCY_TABLES) or {}
    if not per_budget:
        return {LATENCY: trial_table(user_attrs.get(attrs.LATENCY_TABLE) or {}, subnet_dir=subnet_dir,
                                     extra_dirs=extra_dirs)}
    out: dict[str, LatencyTable] = {}
    for budget in [b for b in TABLE_PHASES if b in per_budget] + [b for b in per_budget if b not in TABLE_PHASES]:
        try:
            out[budget] = trial_table(per_budget[budget], subnet_dir=subnet_dir, extra_dirs=extra_dirs)
        except LatencyTableError as e:
            raise LatencyTableError(f"{budget}: {e}") from None
    return out
