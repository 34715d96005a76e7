"""Study helpers: create or load a search study, list studies, turn trials into Pareto points.

A search study is a plain Optuna study (readable by ``optuna`` CLI and
optuna-dashboard) with directions from the experiment's objectives and these
study user attributes: ``objectives`` (names, in value order), ``experiment``
(the experiment dict) and ``nas_version``. Trials carry the attributes listed
in :mod:`nas.search.attrs`. A study's latency objectives (:func:`latency_objectives`:
``latency_ms``, or ``ttft_ms`` and ``tpot_ms`` for a decoder priced per phase) are the
columns ``nas pareto`` shows and the first of them orders the front.
"""

from __future__ import annotations

from typing import Any

from nas.errors import StorageError, StudyBusyError
from nas.latency.budgets import LATENCY, LATENCY_OBJECTIVES, TABLE_PHASES
from nas.search import attrs
from nas.search.pareto import Point, latencies, pareto_front

STUDY_OBJECTIVES = "objectives"
STUDY_EXPERIMENT = "experiment"


def _direction_names(study) -> tuple[str, ...]:
    return tuple(d.name.lower() for d in study.directions)


def study_names(storage) -> list[str]:
    """Names of every study in ``storage``."""
    import optuna

    return sorted(optuna.study.get_all_study_names(storage=storage))


def load_study(storage, name: str):
    """Load an existing study.

    Raises:
        StorageError: no study of that name (the message lists the known ones).
    """
    import optuna

    names = study_names(storage)
    if name not in names:
        known = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "") if names else "none"
        raise StorageError(f"study {name!r}: no such study in this storage (studies: {known})")
    return optuna.load_study(study_name=name, storage=storage)


def check_can_create(storage, name: str, *, resume: bool) -> None:
    """Refuse a new search on an existing study unless ``resume`` (read-only; call before starting anything).

    Raises:
        StorageError: the study exists and ``resume`` is false.
    """
    if not resume and name in study_names(storage):
        raise StorageError(f"study {name!r}: already exists; pass --resume to continue it or choose another --study")


def create_or_load_study(storage, name: str, *, objectives: tuple[str, ...], directions: tuple[str, ...],
                         experiment: dict[str, Any] | None = None, resume: bool = False):
    """The study ``name``: created when new; an existing one only with ``resume``.

    Raises:
        StorageError: the study exists and ``resume`` is false, or its objectives differ.
    """
    import optuna

    from nas.version import __version__

    if name in study_names(storage):
        if not resume:
            raise StorageError(f"study {name!r}: already exists; pass --resume to continue it or choose another --study")
        study = optuna.load_study(study_name=name, storage=storage)
        have = tuple(study.user_attrs.get(STUDY_OBJECTIVES, attrs.OBJECTIVES))
        if have != tuple(objectives) or _direction_names(study) != tuple(directions):
            raise StorageError(f"study {name!r}: objectives {list(have)} differ from the experiment's {list(objectives)}")
        return study
    from sqlalchemy.exc import IntegrityError

    try:
        study = optuna.create_study(study_name=name, storage=storage, directions=list(directions))
    except (optuna.exceptions.DuplicatedStudyError, IntegrityError):
        raise StudyBusyError(f"study {name!r}: another search driver created it at the same moment; "
                             "let that one run, or pass --resume once it has finished") from None
    import warnings

    with warnings.catch_warnings():  # experimental in Optuna 5, and what optuna-dashboard reads
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(objectives))  # the dashboard shows "quality", not "Objective 0"
    study.set_user_attr(STUDY_OBJECTIVES, list(objectives))
    study.set_user_attr("nas_version", __version__)
    if experiment is not None:
        study.set_user_attr(STUDY_EXPERIMENT, experiment)
    return study


def fail_orphans(study) -> list[int]:
    """Mark RUNNING trials FAIL (left behind by a killed driver); returns their numbers.

    Only call this when no other driver works on the study (after taking its lease).
    """
    return fail_running(study, "orphaned: the search driver died")


def fail_running(study, reason: str) -> list[int]:
    """Mark this driver's unfinished (RUNNING) trials FAIL with ``reason``; returns their numbers.

    Only for the driver that holds the study's lease (:mod:`nas.search.lease`).
    """
    from optuna.trial import TrialState

    numbers = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_system_attr(t._trial_id, "fail_reason", reason)
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        numbers.append(t.number)
    return numbers


def complete_trials(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def to_point(trial) -> Point:
    """One COMPLETE trial as a :class:`Point` (metrics from its user attributes)."""
    ua = trial.user_attrs
    m = ua.get(attrs.METRICS, {})
    return Point(
        trial=trial.number,
        values=tuple(float(v) for v in trial.values),
        quality=float(m.get("quality_after", m.get("quality", float("nan")))),
        latency_ms=float(m.get("latency_ms", float("nan"))),
        size_mb=float(m.get("size_mb", float("nan"))),
        latencies={k: float(m[k]) for k in LATENCY_OBJECTIVES
                   if isinstance(m.get(k), (int, float)) and not isinstance(m.get(k), bool)},
        arch_summary=str(ua.get(attrs.ARCH_SUMMARY, "")),
        arch=dict(ua.get(attrs.ARCH, {})),
        attrs=dict(ua),
    )


def latency_objectives(study) -> tuple[str, ...]:
    """The study's latency objectives in objective order (``latency_ms``; ``ttft_ms``, ``tpot_ms``, ...).

    A study whose objectives name no latency: the budgets of its experiment's ``latency_tables``,
    else ``latency_ms``.
    """
    names = tuple(study.user_attrs.get(STUDY_OBJECTIVES) or attrs.OBJECTIVES)
    found = tuple(o for o in names if o in LATENCY_OBJECTIVES)
    if found:
        return found
    tables = (study.user_attrs.get(STUDY_EXPERIMENT) or {}).get("latency_tables") or {}
    return tuple(b for b in TABLE_PHASES if b in tables) or (LATENCY,)


def front(study) -> list[Point]:
    """The study's Pareto front as points, fastest first in its first latency objective (ties by trial number)."""
    points = [to_point(t) for t in complete_trials(study)]
    pts = pareto_front(points, _direction_names(study))
    first = latency_objectives(study)[0]
    return sorted(pts, key=lambda p: (latencies(p).get(first, float("inf")), p.trial))


def summaries(storage) -> list[dict[str, Any]]:
    """One row per study: name, directions, trials by state, best quality."""
    import optuna

    rows = []
    for s in sorted(optuna.study.get_all_study_summaries(storage=storage, include_best_trial=False),
                    key=lambda s: s.study_name):
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        by_state: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            by_state[t.state.name.lower()] = by_state.get(t.state.name.lower(), 0) + 1
        rows.append({
            "study": s.study_name,
            "objectives": ",".join(s.user_attrs.get(STUDY_OBJECTIVES, [])),
            "directions": ",".join(d.name.lower() for d in s.directions),
            "trials": sum(by_state.values()),
            "complete": by_state.get("complete", 0),
            "failed": by_state.get("fail", 0),
            "running": by_state.get("running", 0),
            "created": s.datetime_start.isoformat(timespec="seconds") if s.datetime_start else "",
        })
    return rows
