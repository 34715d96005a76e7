"""From a study and a pick rule to one COMPLETE trial and its saved subnet (I/O at this edge).

Pick rule: :func:`nas.search.pareto.pick` over the study's Pareto front
(objectives :data:`nas.search.attrs.OBJECTIVES`): ``trial=N`` takes trial N
(any COMPLETE trial, on the front or not); ``max_latency_ms=X`` the
highest-quality front point whose latency is ``<= X``; ``best_quality`` the
highest-quality front point. Ties go to lower latency, smaller size, lower
trial number.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.errors import ConfigError, ModelError, StorageError
from nas.search import attrs as A
from nas.search.pareto import Point, pareto_front, pick

STORAGE_ENV = "NAS_STORAGE"


@dataclass(frozen=True)
class TrialRef:
    """The chosen trial: where it lives, its point on the front and its attributes."""

    study: str
    storage: str  # the URL with any password hidden
    point: Point
    on_front: bool

    @property
    def number(self) -> int:
        return self.point.trial

    @property
    def attrs(self) -> dict[str, Any]:
        return self.point.attrs


def safe_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (never print a storage password)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (e.g. a journal file path)
        return url


def resolve_storage(storage: str | None) -> str:
    """The storage URL: the argument, else ``$NAS_STORAGE``.

    Raises:
        ConfigError: neither is set.
    """
    url = storage or os.environ.get(STORAGE_ENV)
    if not url:
        raise ConfigError(f"storage: give --storage URL or set {STORAGE_ENV}")
    return url


def _open_study(study: str, url: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        if not db.is_file():  # Optuna would silently create an empty database
            raise StorageError(f"storage: {safe_url(url)}: no such SQLite file")
    try:
        storage = optuna.storages.RDBStorage(url, skip_compatibility_check=False)
    except Exception as e:
        raise StorageError(f"storage: cannot open {safe_url(url)}: {type(e).__name__}") from None
    try:
        return optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        names = ", ".join(sorted(s.study_name for s in optuna.get_all_study_summaries(storage))) or "none"
        raise StorageError(f"study: no study named {study!r} in {safe_url(url)} (studies: {names})") from None


def _point(t) -> Point:
    values = tuple(float(v) for v in t.values)
    q, lat, size = values[: len(A.OBJECTIVES)]
    return Point(
        trial=t.number, values=values, quality=q, latency_ms=lat, size_mb=size,
        arch_summary=str(t.user_attrs.get(A.ARCH_SUMMARY, "")), arch=dict(t.user_attrs.get(A.ARCH, {})),
        attrs=dict(t.user_attrs),
    )


def choose_trial(
    *, study: str, storage: str | None = None, trial: int | None = None, max_latency_ms: float | None = None,
    best_quality: bool = False,
) -> TrialRef:
    """Open the study and pick one COMPLETE trial (see module docstring).

    Raises:
        ConfigError: no rule or more than one rule; no front point meets the latency bound.
        StorageError: unknown storage, study or trial; a trial that is not COMPLETE.
    """
    rules = [n for n, v in (("trial", trial), ("max_latency_ms", max_latency_ms), ("best_quality", best_quality or None))
             if v is not None]
    if len(rules) != 1:
        raise ConfigError("rule: choose exactly one of --trial, --max-latency, --best-quality"
                          + (f" (got {', '.join(rules)})" if rules else ""))
    url = resolve_storage(storage)
    s = _open_study(study, url)
    import optuna

    all_trials = s.get_trials(deepcopy=False)
    complete = [t for t in all_trials if t.state == optuna.trial.TrialState.COMPLETE]
    points = [_point(t) for t in complete]
    front = pareto_front(points, A.DIRECTIONS, key=lambda p: p.values[: len(A.OBJECTIVES)])
    if trial is not None:
        by_number = {t.number: t for t in all_trials}
        if trial not in by_number:
            raise StorageError(f"trial: study {study!r} has no trial {trial} (trials 0..{len(all_trials) - 1})")
        state = by_number[trial].state
        if state != optuna.trial.TrialState.COMPLETE:
            raise StorageError(f"trial: trial {trial} of study {study!r} is {state.name}, not COMPLETE")
        chosen = pick(points, trial=trial)
    else:
        chosen = pick(front, max_latency_ms=max_latency_ms, best_quality=best_quality)
    return TrialRef(study=study, storage=safe_url(url), point=chosen,
                    on_front=any(p.trial == chosen.trial for p in front))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_trial_subnet(ref: TrialRef):
    """The trial's saved subnet, after checking its weights against the recorded sha256.

    Raises:
        StorageError: the trial lacks the subnet attributes.
        ModelError: the weights file is missing, its sha256 differs (corrupt or
            replaced), or it does not load.
    """
    from nas.supernet.derive import load_subnet

    for key in (A.SUBNET_DIR, A.SUBNET_SHA256, A.ARCH):
        if key not in ref.attrs:
            raise StorageError(f"{key}: trial {ref.number} of study {ref.study!r} has no {key!r} attribute")
    directory = Path(ref.attrs[A.SUBNET_DIR])
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise ModelError(f"subnet_dir: weights of trial {ref.number} not found: {weights}")
    got = sha256_file(weights)
    if got != ref.attrs[A.SUBNET_SHA256]:
        raise ModelError(
            f"subnet_sha256: {weights} has sha256 {got[:12]}…, trial {ref.number} recorded "
            f"{str(ref.attrs[A.SUBNET_SHA256])[:12]}… (corrupted or replaced)"
        )
    subnet = load_subnet(directory)
    recorded = {k: int(v) for k, v in ref.attrs[A.ARCH].items()}
    if subnet.arch != subnet.space.validate(recorded):
        raise ModelError(f"arch: the subnet in {directory} is not trial {ref.number}'s architecture")
    return subnet
