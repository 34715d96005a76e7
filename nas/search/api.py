"""The Python API of the search service; mirrors ``nas search``, ``nas pareto`` and ``nas studies``.

Example:
    >>> from nas.search import api
    >>> outcome = api.run_search("experiments/smoke.yaml", storage="sqlite:///studies.db", trials=3)  # doctest: +SKIP
    >>> front = api.load_front("smoke", storage="sqlite:///studies.db")  # doctest: +SKIP
    >>> best = api.pick_trial("smoke", storage="sqlite:///studies.db", max_latency_ms=2.0)  # doctest: +SKIP
    >>> chat = api.pick_trial("phases", storage="sqlite:///studies.db",
    ...                       max_values={"ttft_ms": 40, "tpot_ms": 15})  # doctest: +SKIP
    >>> best.attrs["artifacts"]["subnet"][0]["filename"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nas.search.experiment import Experiment
from nas.search.pareto import Point, pick
from nas.search.runner import SearchOutcome


def load_experiment(experiment: str | Path | Experiment) -> Experiment:
    """An :class:`Experiment` from a YAML path (or returned as is)."""
    return experiment if isinstance(experiment, Experiment) else Experiment.from_yaml(experiment)


def run_search(experiment: str | Path | Experiment, *, storage: Any = None, study: str | None = None,
               trials: int | None = None, concurrency: int | None = None, address: str | None = None,
               resume: bool = False, runs_dir: str | Path | None = None, num_cpus: int | None = None,
               artifacts: str | None = None, timeout_s: float | None = None,
               log: Callable[[str], None] | None = None) -> SearchOutcome:
    """Launch (or resume) a search; the same as ``nas search``.

    Args:
        experiment: an experiment YAML path or a parsed :class:`Experiment`.
        storage: storage URL or Optuna storage (default ``$NAS_STORAGE`` or ``./nas_studies.db``).
        study: study name (default: the experiment's ``name``).
        trials, concurrency, timeout_s: override ``run.trials`` / ``run.concurrency`` / ``run.timeout_s`` (a timeout
            without a trial count: as many trials as fit).
        address: join a Ray cluster (``auto``, ``ray://host:port``); default a local Ray.
        resume: continue the study until it holds ``trials`` complete trials.
        runs_dir: Ray Tune's records and retried trials' checkpoints.
        artifacts: the artifact store URL trial subnets go to (:mod:`nas.search.artifacts`).
        num_cpus: CPUs of the local Ray.
        log: progress-line sink (default stderr).

    Returns:
        What the run did (:class:`~nas.search.runner.SearchOutcome`).

    Raises:
        NASError: any bad input, before Ray starts.
    """
    from nas.search.runner import run_search as _run

    return _run(load_experiment(experiment), storage=storage, study=study, trials=trials, concurrency=concurrency,
                address=address, resume=resume, runs_dir=runs_dir, num_cpus=num_cpus, artifacts=artifacts,
                timeout_s=timeout_s, log=log)


def load_front(study: str, *, storage: Any = None) -> list[Point]:
    """The Pareto front of ``study``, fastest first (in its first latency objective).

    Raises:
        StorageError: unknown study, unreachable storage.
    """
    from nas.search.storage import get_storage
    from nas.search.study import front, load_study

    return front(load_study(get_storage(storage, create=False), study))


def load_points(study: str, *, storage: Any = None) -> list[Point]:
    """Every COMPLETE trial of ``study`` as a point, by trial number."""
    from nas.search.storage import get_storage
    from nas.search.study import complete_trials, load_study, to_point

    return [to_point(t) for t in complete_trials(load_study(get_storage(storage, create=False), study))]


def latency_objectives(study: str, *, storage: Any = None) -> tuple[str, ...]:
    """The latency objectives of ``study``: ``("latency_ms",)``, or ``("ttft_ms", "tpot_ms")`` priced per phase."""
    from nas.search.storage import get_storage
    from nas.search.study import latency_objectives as _names, load_study

    return _names(load_study(get_storage(storage, create=False), study))


def pick_trial(study: str, *, storage: Any = None, max_latency_ms: float | None = None, best_quality: bool = False,
               trial: int | None = None, max_values: Mapping[str, float] | None = None) -> Point:
    """One trial of ``study`` by the pick rule of :mod:`nas.search.pareto`.

    With ``trial`` any COMPLETE trial can be picked; otherwise the choice is made on the front.

    Args:
        study, storage: the study and its storage URL.
        max_latency_ms: the highest quality with ``latency_ms <= max_latency_ms`` (a single-latency study).
        max_values: the highest quality with every ``name <= value`` (``{"ttft_ms": 40, "tpot_ms": 15}``;
            names: the study's latency objectives and ``size_mb``).
        best_quality: the highest quality (the default).
        trial: that trial.

    Raises:
        StorageError: unknown study or trial; ConfigError: no trial fits the bounds, or an unknown name.
    """
    candidates = load_points(study, storage=storage) if trial is not None else load_front(study, storage=storage)
    return pick(candidates, max_latency_ms=max_latency_ms, best_quality=best_quality, trial=trial,
                max_values=max_values)


def list_studies(*, storage: Any = None) -> list[dict[str, Any]]:
    """One summary row per study (name, objectives, trial counts by state)."""
    from nas.search.storage import get_storage
    from nas.search.study import summaries

    return summaries(get_storage(storage, create=False))


def fetch_subnet(study: str, trial: int, dest: str | Path, *, storage: Any = None, artifacts: str | None = None
                 ) -> Path:
    """Download trial ``trial``'s subnet files (``model.safetensors``, ``subnet.json``, ``head.safetensors``) into ``dest``.

    Every file's sha256 is checked against the trial's record; ``nas.load_subnet(dest)`` loads it.

    Args:
        study, trial: the study and a COMPLETE trial number.
        dest: the folder to fill (created).
        storage: the study's storage URL.
        artifacts: the artifact store URL (default: the one the study recorded).

    Raises:
        StorageError: unknown study or trial, no artifact store, a missing or altered artifact.
    """
    from nas.errors import StorageError
    from nas.search import attrs
    from nas.search.artifacts import STUDY_ATTR, download_files, get_store
    from nas.search.storage import get_storage
    from nas.search.study import load_study

    s = load_study(get_storage(storage, create=False), study)
    found = [t for t in s.get_trials(deepcopy=False) if t.number == trial]
    if not found or attrs.ARTIFACTS not in found[0].user_attrs:
        raise StorageError(f"trial: study {study!r} has no trial {trial} with uploaded artifacts")
    url = artifacts or s.user_attrs.get(STUDY_ATTR)
    if not url:
        raise StorageError(f"artifacts: study {study!r} records no artifact store; pass artifacts=URL")
    return download_files(get_store(url), found[0].user_attrs[attrs.ARTIFACTS]["subnet"], dest,
                          what=f"trial {trial}'s")
