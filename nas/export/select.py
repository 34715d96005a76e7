"""From a study and a pick rule to one COMPLETE trial and its saved subnet (I/O at this edge).

Pick rule: :func:`nas.search.pareto.pick` over the study's Pareto front
(the study's objectives): ``trial=N`` takes trial N (any COMPLETE trial, on the
front or not); ``max_values={name: X, ...}`` the highest-quality front point with
every ``name <= X`` (the study's latency objectives, e.g. ``ttft_ms`` and
``tpot_ms``, or ``size_mb``); ``max_latency_ms=X`` the same for ``latency_ms`` of a
single-latency study; ``best_quality`` the highest-quality front point. Ties go
to lower latency, smaller size, lower trial number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.errors import ConfigError, ModelError, SpaceError, StorageError
from nas.files import sha256_file
from nas.search import attrs as A
from nas.search.pareto import Point, pick



@dataclass(frozen=True)
class TrialRef:
    """The chosen trial: where it lives, its point on the front and its attributes."""

    study: str
    storage: str  # the URL with any password hidden
    point: Point
    on_front: bool
    plugin: str | None = None  # the trial plug-in the study's experiment named
    artifact_store: str | None = None  # the study's artifact store URL (or the caller's override)
    study_tables: dict[str, Any] | None = None  # {sha256: artifact entry} of the latency tables the study stored

    @property
    def number(self) -> int:
        return self.point.trial

    @property
    def attrs(self) -> dict[str, Any]:
        return self.point.attrs


def choose_trial(
    *, study: str, storage: str | None = None, trial: int | None = None, max_latency_ms: float | None = None,
    best_quality: bool = False, artifacts: str | None = None, max_values: Mapping[str, float] | None = None,
) -> TrialRef:
    """Open the study and pick one COMPLETE trial (see module docstring).

    Args:
        study: the study name.
        storage: a storage URL (default: ``$NAS_STORAGE`` or ``./nas_studies.db``, see
            :func:`nas.search.storage.get_storage`).
        trial, max_latency_ms, max_values, best_quality: the rule; exactly one.
        artifacts: the artifact store URL (default: the one the study recorded).

    Raises:
        ConfigError: no rule or more than one rule; no front point meets the bounds; an unknown bound name;
            ``max_latency_ms`` on a study priced per phase.
        StorageError: unknown storage, study or trial; a trial that is not COMPLETE.
    """
    from optuna.trial import TrialState

    from nas.search.storage import get_storage, redact, resolve_url
    from nas.search.study import front, load_study, to_point

    rules = [n for n, v in (("trial", trial), ("max_latency_ms", max_latency_ms), ("max_values", max_values or None),
                            ("best_quality", best_quality or None)) if v is not None]
    if len(rules) != 1:
        raise ConfigError("rule: choose exactly one of --trial, --max-latency, --best-quality, --max NAME=VALUE"
                          + (f" (got {', '.join(rules)})" if rules else ""))
    url = resolve_url(storage)
    s = load_study(get_storage(url, create=False), study)
    points_on_front = front(s)
    if trial is not None:
        trials = {t.number: t for t in s.get_trials(deepcopy=False)}
        if trial not in trials:
            raise StorageError(f"trial: study {study!r} has no trial {trial} (trials 0..{len(trials) - 1})")
        t = trials[trial]
        if t.state != TrialState.COMPLETE:
            raise StorageError(f"trial: trial {trial} of study {study!r} is {t.state.name}, not COMPLETE")
        chosen = pick([to_point(t)], trial=trial)
    else:
        chosen = pick(points_on_front, max_latency_ms=max_latency_ms, best_quality=best_quality, max_values=max_values)
    from nas.search.artifacts import STUDY_ATTR
    from nas.search.tables import STUDY_TABLES

    experiment = s.user_attrs.get("experiment") or {}
    return TrialRef(study=study, storage=redact(url), point=chosen,
                    on_front=any(p.trial == chosen.trial for p in points_on_front), plugin=experiment.get("trial"),
                    artifact_store=artifacts or s.user_attrs.get(STUDY_ATTR),
                    study_tables=dict(s.user_attrs.get(STUDY_TABLES) or {}))


def load_trial_subnet(ref: TrialRef):
    """The trial's subnet, downloaded from the study's artifact store (every file's sha256 checked).

    Trials recorded before the artifact store name a local folder (``subnet_dir``) instead.

    Raises:
        StorageError: the trial lacks the subnet attributes; the study names no artifact store; an
            artifact is missing, unreadable, or its sha256 differs from the recorded one.
        ModelError: the weights file is missing, its sha256 differs (corrupt or
            replaced), or it does not load.
        SpaceError: the subnet's space hash differs from the one the trial recorded.
    """
    import tempfile

    if A.ARTIFACTS not in ref.attrs:
        return _load_checked(ref, None)
    from nas.search.artifacts import download_files, get_store

    if not ref.artifact_store:
        raise StorageError(f"artifacts: study {ref.study!r} records no artifact store; pass --artifacts URL")
    entries = ref.attrs[A.ARTIFACTS].get("subnet") or []
    with tempfile.TemporaryDirectory(prefix="nas-subnet-") as d:
        download_files(get_store(ref.artifact_store), entries, d, what=f"trial {ref.number}'s")
        # download_files checked each file against its entry's sha256: reuse those, no second hashing pass
        return _load_checked(ref, Path(d), verified={e["filename"]: e["sha256"] for e in entries})


def _load_checked(ref: TrialRef, directory: Path | None, verified: dict[str, str] | None = None):
    from nas.supernet.derive import load_subnet

    def sha(path: Path) -> str:
        return (verified or {}).get(path.name) or sha256_file(path)

    for key in ((A.SUBNET_DIR,) if directory is None else ()) + (A.SUBNET_SHA256, A.ARCH):
        if key not in ref.attrs:
            raise StorageError(f"{key}: trial {ref.number} of study {ref.study!r} has no {key!r} attribute")
    directory = Path(ref.attrs[A.SUBNET_DIR]) if directory is None else directory
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise ModelError(f"subnet_dir: weights of trial {ref.number} not found: {weights}")
    got = sha(weights)
    if got != ref.attrs[A.SUBNET_SHA256]:
        raise ModelError(
            f"subnet_sha256: {weights} has sha256 {got[:12]}…, trial {ref.number} recorded "
            f"{str(ref.attrs[A.SUBNET_SHA256])[:12]}… (corrupted or replaced)"
        )
    head = directory / "head.safetensors"
    if A.HEAD_SHA256 in ref.attrs:
        if not head.is_file():
            raise ModelError(f"head_sha256: task head of trial {ref.number} not found: {head}")
        got = sha(head)
        if got != ref.attrs[A.HEAD_SHA256]:
            raise ModelError(f"head_sha256: {head} has sha256 {got[:12]}…, trial {ref.number} recorded "
                             f"{str(ref.attrs[A.HEAD_SHA256])[:12]}… (corrupted or replaced)")
    subnet = load_subnet(directory)
    space = ref.attrs.get(A.SPACE) or {}
    if space.get("hash") and space["hash"] != subnet.space.hash:
        raise SpaceError(
            f"space: the subnet in {directory} was derived from space {subnet.space.name!r} with hash "
            f"{subnet.space.hash}, trial {ref.number} recorded space {space.get('name')!r} with hash {space['hash']}"
        )
    recorded = {k: int(v) for k, v in ref.attrs[A.ARCH].items()}
    if subnet.arch != subnet.space.validate(recorded):
        raise ModelError(f"arch: the subnet in {directory} is not trial {ref.number}'s architecture")
    return subnet
