"""The search driver: Ray Tune trials, Ray's ``OptunaSearch`` writing to the study.

Flow: validate everything (experiment, space vs latency tables, trial function,
storage, study) before Ray starts, and that the cluster has ``gpus_per_trial`` GPUs
once it is up; then Tune runs ``trials`` trials, ``concurrency`` at a time with
``cpus_per_trial`` CPUs (and ``gpus_per_trial`` GPUs) each. Optuna samples each trial's parameters
(TPE by default, multi-objective) in the driver; the trial process reports its
objective values and attributes; the driver writes them to the study (one
writer, retried on transient database errors).

Fault tolerance:

* a trial that raises or whose process dies is retried up to ``max_failures``
  times (Tune's ``FailureConfig``); if every attempt fails it ends FAIL in the
  study; the number of failed attempts is the trial attribute ``attempt_failures``;
* a trial whose configuration cannot run (a :class:`~nas.errors.NASError` such
  as a target below the smallest architecture) is not retried: it ends FAIL at
  once with the one-line reason as its ``fail_reason``;
* one study has one live driver: the driver holds the study's lease
  (:mod:`nas.search.lease`) from before it touches a trial until it ends; a
  second driver is refused with :class:`~nas.errors.StudyBusyError`;
* ``resume=True`` continues a study after its driver died (its lease gone
  stale): RUNNING trials it left behind are marked FAIL, and only
  ``trials - complete`` new trials run, so the study ends with exactly
  ``trials`` COMPLETE trials, none lost or duplicated;
* ``timeout_s``: a wall-clock budget from the call's start (Ray start and the shared
  supernet included): no trial starts after it, trials running then finish and are
  recorded, as Optuna's ``optimize(timeout=...)`` does; without ``trials`` the search
  runs as many trials as the budget allows;
* SIGINT / SIGTERM: no new trial starts, running trials are stopped, every
  trial that finished is recorded, the rest end FAIL (resumable), and
  :class:`~nas.errors.SearchInterrupted` says how to resume (the CLI exits 130 / 143).

Nothing the driver hands to Ray holds a credential: the search algorithm drops
its storage when pickled (Tune writes it to ``tuner.pkl`` and searcher
checkpoints), and ``NAS_STORAGE`` is not passed to the trial processes (they
never touch the study).

Ray: without ``address`` the driver always starts its own local Ray, whatever
else runs on the machine. The study is created only once Ray is up, so a Ray
that cannot start leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import ConfigError, SearchInterrupted
from nas.search.experiment import Experiment, timeout_error
from nas.search.storage import redact, resolve_url, retry_transient
from nas.search.worker import ATTRS_KEY, COMPUTE_KEY, DEVICE_KEY, FAILED_KEY, TRIAL_NUMBER_KEY

_RAY_ENV = {
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "100",
    "TUNE_DISABLE_SIGINT_HANDLER": "1",  # the driver handles SIGINT/SIGTERM itself (_SignalStop)
}
_PASSED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "NLTK_DATA", "WNHOME")
_NOT_PASSED = ("NAS_STORAGE",)  # may hold a password; trials never touch the study


@dataclass
class TrialTiming:
    trial: int
    wall_s: float  # driver-side: trial started -> result received
    compute_s: float  # the trial function's own time (run + save)
    finished_s: float = 0.0  # when its result reached the driver, seconds since run_search started

    @property
    def overhead_s(self) -> float:
        return max(self.wall_s - self.compute_s, 0.0)


@dataclass
class SearchOutcome:
    """What one :func:`run_search` call did.

    Attributes:
        study, storage: the study name and its storage URL (password redacted).
        requested: COMPLETE trials the study should hold when done (``trials``); None: as many as ``timeout_s``
            allows.
        complete: COMPLETE trials it holds now.
        ran, failed: trials started / ended FAIL in this call.
        orphans: RUNNING trials of a dead driver marked FAIL by ``resume``.
        timings: per trial of this call, driver wall time vs its own compute.
        setup_s, wall_s: time before the first trial (Ray start, study) and in total.
        timed_out: the timeout stopped new trials.
    """

    study: str
    storage: str
    requested: int | None
    complete: int
    ran: int = 0
    failed: int = 0
    orphans: list[int] = field(default_factory=list)
    timings: list[TrialTiming] = field(default_factory=list)
    setup_s: float = 0.0
    wall_s: float = 0.0
    timed_out: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("study", "storage", "requested", "complete", "ran", "failed", "orphans",
                                           "setup_s", "wall_s", "timed_out")}
        d["timings"] = [{"trial": t.trial, "wall_s": t.wall_s, "compute_s": t.compute_s,
                         "overhead_s": t.overhead_s, "finished_s": t.finished_s} for t in self.timings]
        return d


def default_runs_dir(storage_url: str) -> Path:
    """``runs/`` next to a SQLite file, else ``./runs``."""
    if storage_url.startswith("sqlite:///"):
        return Path(storage_url[len("sqlite:///"):]).resolve().parent / "runs"
    return Path("runs").resolve()


def make_sampler(name: str, seed: int | None):
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True)


def run_search(experiment: Experiment, *, storage: Any = None, study: str | None = None, trials: int | None = None,
               concurrency: int | None = None, address: str | None = None, resume: bool = False,
               runs_dir: str | Path | None = None, num_cpus: int | None = None, artifacts: str | None = None,
               log: Callable[[str], None] | None = None, num_gpus: int | None = None,
               timeout_s: float | None = None) -> SearchOutcome:
    """Run (or resume) a search; see the module docstring.

    Args:
        experiment: the parsed experiment.
        storage: URL, Optuna storage or None (``$NAS_STORAGE`` / ``./nas_studies.db``).
        study: study name (default: the experiment's name).
        trials: COMPLETE trials wanted (default ``run.trials``; unset: 4, or no limit with a timeout); with
            ``resume`` the total the study should hold, otherwise the number of new trials.
        concurrency: trials at once (default ``run.concurrency``).
        address: join an existing Ray cluster (``auto`` or ``ray://host:port``);
            default: start a local Ray for this call (dashboard off).
        resume: continue an existing study (after a crash or to add trials).
        runs_dir: Ray Tune's own records and retried trials' checkpoints (default: ``runs/`` next to the
            SQLite file).
        artifacts: the artifact store trials upload their subnets to (:mod:`nas.search.artifacts`; default:
            the study's recorded store when resuming, else ``$NAS_ARTIFACTS`` or ``<db>.artifacts`` beside a
            SQLite file).
        num_cpus: CPUs of the local Ray (default: ``os.cpu_count()``). Trial processes
            see this worktree on ``PYTHONPATH`` and every ``NAS_*`` environment variable.
        log: progress lines (default: stderr).
        num_gpus: GPUs of the local Ray (default: the ones Ray detects).
        timeout_s: no trial starts once this many seconds have passed since the call began; running trials
            finish (:attr:`SearchOutcome.timed_out`). Default ``run.timeout_s`` (none).

    Returns:
        A :class:`SearchOutcome`.

    Raises:
        ConfigError, StorageError, LatencyTableError: before Ray starts.
        DeviceError: ``run.gpus_per_trial`` exceeds the Ray cluster's GPUs (before the study is touched).
        StudyBusyError: another live driver holds the study.
        SearchInterrupted: SIGINT or SIGTERM arrived; finished trials are recorded, the rest marked FAIL.
    """
    from nas.latency.table import load_table
    from nas.search.artifacts import STUDY_ATTR, default_store_url, ensure_writable, get_store
    from nas.search.lease import DriverLease
    from nas.search.tables import store_study_table
    from nas.search.storage import get_storage, sqlite_file
    from nas.search.study import (check_can_create, complete_trials, create_or_load_study, fail_orphans, fail_running,
                                  load_study, study_names)

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t_start = time.perf_counter()
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if timeout_s is not None and (why := timeout_error(timeout_s)):
        raise ConfigError(f"timeout: {why}")
    timeout_s = experiment.run.timeout_s if timeout_s is None else timeout_s
    trials = experiment.run.trial_limit(timeout_s) if trials is None else trials
    concurrency = experiment.run.concurrency if concurrency is None else concurrency
    if trials is not None and trials < 1:
        raise ConfigError(f"trials: must be >= 1, got {trials}")
    if concurrency < 1:
        raise ConfigError(f"concurrency: must be >= 1, got {concurrency}")
    cpus, gpus = experiment.run.cpus_per_trial, experiment.run.gpus_per_trial
    if address is None:
        num_cpus = num_cpus or os.cpu_count() or 1
        if cpus > num_cpus:
            raise ConfigError(f"run.cpus_per_trial: {cpus} exceeds the {num_cpus} CPUs of the local Ray")
    experiment.check()
    experiment.plugin  # importable and a plug-in, before anything starts

    url = storage if isinstance(storage, str) or storage is None else None
    resolved = resolve_url(url) if url is not None or storage is None else None
    db = sqlite_file(resolved) if resolved else None
    new_db = db is not None and (not db.is_file() or db.stat().st_size == 0)
    st = None if new_db else get_storage(storage)  # a new SQLite file is created only once Ray is up
    url_shown = redact(resolved) if resolved else type(st).__name__
    name = study or experiment.name
    recorded_store = None
    if st is not None:
        check_can_create(st, name, resume=resume)  # the common refusals, before Ray starts
        if resume and name in study_names(st):
            existing = load_study(st, name)
            DriverLease(existing, takeover=True).check()
            recorded_store = existing.user_attrs.get(STUDY_ATTR)
    store_url = artifacts or recorded_store or default_store_url(resolved or str(getattr(st, "url", "")))
    get_store(store_url)  # a malformed URL or a missing extra: a typed error now

    import ray
    from ray import tune

    started_ray = _init_ray(address=address, num_cpus=num_cpus, num_gpus=num_gpus)
    lease = None
    try:
        if gpus > 0:  # before anything is scheduled or written
            from nas.search.devices import check_cluster_gpus

            check_cluster_gpus(gpus, ray.cluster_resources().get("GPU", 0))
        if st is None:
            st = get_storage(storage)
        ensure_writable(store_url)
        ot_study = create_or_load_study(st, name, objectives=experiment.objectives, directions=experiment.directions,
                                        experiment=experiment.to_dict(), resume=resume)
        lease = DriverLease(ot_study, takeover=resume)
        lease.acquire()
        if ot_study.user_attrs.get(STUDY_ATTR) != store_url:
            ot_study.set_user_attr(STUDY_ATTR, store_url)
        for table in dict.fromkeys(experiment.tables.values()):  # every table the trials price with
            store_study_table(ot_study, get_store(store_url), load_table(table))
        orphans = fail_orphans(ot_study) if resume else []
        done = len(complete_trials(ot_study))
        if trials is None:  # as many as the timeout allows
            remaining, requested = -1, None
        else:
            remaining = max(trials - done, 0) if resume else trials
            requested = trials if resume else done + trials
        outcome = SearchOutcome(study=name, storage=url_shown, requested=requested, complete=done, orphans=orphans)
        if orphans:
            say(f"resume: marked trial(s) {', '.join(map(str, orphans))} FAIL (left RUNNING by a dead driver)")
        if remaining == 0:
            say(f"study {name}: already holds {done} complete trials (requested {trials}); nothing to run")
            outcome.wall_s = time.perf_counter() - t_start
            return outcome
        runs = Path(runs_dir).resolve() if runs_dir else default_runs_dir(str(getattr(st, "url", "")))
        runs.mkdir(parents=True, exist_ok=True)
        from nas.search.shared import ensure_shared_supernet

        resources = {"cpu": cpus, **({"gpu": gpus} if gpus else {})}
        shared = ensure_shared_supernet(experiment, ot_study, store_url, runs, say=say,  # trained once per study,
                                        resources=resources)  # as a Ray task on one trial's resources
        count = "trials" if trials is None else f"{remaining} trial(s)"
        if timeout_s is not None:
            count += f"{'' if trials is None else ' at most'} until {timeout_s:g} s have passed"
        say(f"study {name} in {url_shown}: running {count}, {concurrency} at a time, "
            f"{cpus:g} CPU(s){f' and {gpus:g} GPU(s)' if gpus else ''} each; subnets to the artifact store "
            f"{store_url}")
        n_before = len(ot_study.trials)
        sampler = make_sampler(experiment.sampler, None if experiment.sampler_seed is None
                               else experiment.sampler_seed + n_before)
        searcher = _study_searcher(experiment, st, name, sampler)
        progress = _progress_callback(searcher, outcome, say, None if trials is None else remaining, t_start,
                                      experiment.objectives)
        from nas.search.progress import LineRelay
        from nas.search.worker import tune_trainable

        relay = LineRelay(say)  # the trials' own progress lines, printed here as "trial N: ..."
        job = {"experiment": experiment.to_dict(), "study": name, "runs_dir": str(runs), "progress": relay.queue,
               "artifact_store": store_url, "shared_supernet": shared}

        trainable = tune.with_resources(tune.with_parameters(tune_trainable, job=job), resources)
        stop = _SignalStop(say)
        tuner = tune.Tuner(
            trainable,
            # reuse_actors: the next trial runs in the same worker process (no new interpreter and no
            # torch/transformers imports: ~6 s a trial); a worker that dies is replaced by a fresh one.
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=remaining,
                                        max_concurrent_trials=concurrency, reuse_actors=True),
            run_config=tune.RunConfig(
                name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
                storage_path=str(runs / "ray"),
                failure_config=tune.FailureConfig(max_failures=experiment.run.max_failures),
                verbose=0, callbacks=[progress], stop=stop.stopper,
            ),
        )
        outcome.setup_s = time.perf_counter() - t_start
        with relay, stop, _quiet_tune():
            searcher.stopping = stop.requested
            if timeout_s is not None:
                searcher.deadline = _Deadline(t_start + timeout_s, timeout_s, outcome, say)
            tuner.fit()
        if stop.signum is not None:
            cut = fail_running(ot_study, f"interrupted by {_signal_name(stop.signum)}")
            outcome.complete = len(complete_trials(ot_study))
            outcome.failed += len(cut)
            raise SearchInterrupted(
                f"interrupted by {_signal_name(stop.signum)}: study {name!r} holds {outcome.complete} complete "
                f"trial(s) of {outcome.requested}; {len(cut)} unfinished trial(s) marked FAIL; "
                "run the same command with --resume to finish it", stop.signum)
    finally:
        if lease is not None:
            lease.release()
        if started_ray:
            ray.shutdown()
    outcome.complete = len(complete_trials(ot_study))
    outcome.wall_s = time.perf_counter() - t_start
    asked = "" if outcome.requested is None else f" (requested {outcome.requested})"
    asked += "; stopped at the timeout" if outcome.timed_out else ""
    say(f"study {name}: {outcome.complete} complete trial(s){asked}; "
        f"{outcome.failed} failed in this run; {outcome.wall_s:.1f} s")
    return outcome


def _init_ray(*, address: str | None, num_cpus: int | None, num_gpus: int | None = None) -> bool:
    """Start a local Ray (or join ``address``); False when one was already running."""
    for k, v in _RAY_ENV.items():
        os.environ.setdefault(k, v)
    import logging

    import ray

    if ray.is_initialized():
        return False
    for name in ("ray", "ray._private.authentication.authentication_token_setup"):
        logging.getLogger(name).addFilter(_NoTokenNotice())
    paths = [p for p in sys.path if p and Path(p, "nas", "__init__.py").is_file()]
    pythonpath = os.pathsep.join(dict.fromkeys(paths + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                        if p]))
    env = {k: v for k, v in _RAY_ENV.items()}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    for k, v in os.environ.items():  # offline switches, data locations and NAS_* variables (not the storage URL)
        if (k in _PASSED_ENV or k.startswith("NAS_")) and k not in _NOT_PASSED:
            env[k] = v
    runtime_env = {"env_vars": env}
    if address:
        check_ray_address(address)
        try:
            ray.init(address=address, runtime_env=runtime_env, logging_level="WARNING", log_to_driver=False)
        except Exception as e:  # no token, version mismatch, refused: Ray's own exception types vary
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"address: cannot join the Ray cluster at {address}: {first}"
                              + (" (a cluster started with token authentication needs its token: set RAY_AUTH_TOKEN "
                                 "or run on a node of the cluster)" if "token" in first.lower() else "")) from None
    else:  # "local": a new Ray of our own even when a `ray start` cluster runs on this machine
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 object_store_memory=100 * 1024 * 1024, runtime_env=runtime_env, logging_level="WARNING",
                 log_to_driver=False)
    return True


def check_ray_address(address: str, *, timeout_s: float = 5.0) -> None:
    """Fail fast on a Ray address that cannot work (Ray itself retries an unreachable one for minutes).

    ``auto`` is left to Ray (it errs at once without a cluster). ``host:port`` and
    ``ray://host:port`` must accept a TCP connection within ``timeout_s``; ``ray://`` also
    needs the client extra (``pip install 'ray[client]'``).

    Raises:
        ConfigError: ``address: ...`` in one line.
    """
    import importlib.util
    import socket

    if address == "auto":
        return
    target = address
    if address.startswith("ray://"):
        if importlib.util.find_spec("grpc") is None:
            raise ConfigError(f"address: {address} needs Ray's client extra: pip install 'ray[client]'")
        target = address[len("ray://"):]
    elif "://" in address:
        raise ConfigError(f"address: expected auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    host, sep, port = target.rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"address: expected auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(f"address: no Ray cluster answers at {address} within {timeout_s:g} s "
                          f"({e.strerror or type(e).__name__}); start one with `ray start --head` or check the "
                          "address") from None


class _SignalStop:
    """SIGINT/SIGTERM → stop the run (a Tune stopper), remembering the signal; a second signal interrupts at once.

    Used as a context manager around ``tuner.fit()``: installs the handlers (main thread
    only) and restores the previous ones.
    """

    def __init__(self, say: Callable[[str], None]) -> None:
        from ray.tune import Stopper

        self.say, self.signum, self._old = say, None, {}
        outer = self

        class _Stopper(Stopper):
            def __call__(self, trial_id, result):
                return False

            def stop_all(self):
                return outer.signum is not None

        self.stopper = _Stopper()

    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        self.say(f"{_signal_name(signum)}: stopping — no new trials; unfinished trials will be marked FAIL "
                 "(resumable); send it again to abort at once")

    def __enter__(self) -> "_SignalStop":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for s, h in self._old.items():
            signal.signal(s, h)


class _Deadline:
    """The timeout's deadline (``time.perf_counter`` seconds); the first check past it marks the outcome timed out
    and says so once."""

    def __init__(self, at: float, timeout_s: float, outcome: SearchOutcome, say: Callable[[str], None]) -> None:
        self.at, self.timeout_s, self.outcome, self.say = at, timeout_s, outcome, say

    def passed(self) -> bool:
        if time.perf_counter() < self.at:
            return False
        if not self.outcome.timed_out:
            self.outcome.timed_out = True
            self.say(f"timeout: {self.timeout_s:g} s passed; no new trials, running ones finish")
        return True


class _quiet_tune:
    """While Tune runs: its per-failure traceback stays in the trial's ``error.txt`` (the driver prints one line)."""

    NAMES = ("ray.tune.execution.tune_controller", "ray.tune.tune")

    def __enter__(self) -> "_quiet_tune":
        import logging

        self._levels = {n: logging.getLogger(n).level for n in self.NAMES}
        for n in self.NAMES:
            logging.getLogger(n).setLevel(logging.CRITICAL)
        return self

    def __exit__(self, *exc) -> None:
        import logging

        for n, level in self._levels.items():
            logging.getLogger(n).setLevel(level)


class _NoTokenNotice:
    """Drops Ray's notice that token authentication is on (every local Ray has it; it is not a problem)."""

    def filter(self, record) -> bool:
        return not str(record.getMessage()).startswith("Token authentication is enabled")


def _signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def _study_searcher(experiment: Experiment, storage, study_name: str, sampler):
    """An ``OptunaSearch`` that also writes each trial's attributes and never loses a result."""
    from optuna.trial import TrialState
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    from nas.search import attrs
    from nas.search.artifacts import record_artifacts

    stratified = any(p.stratified for p in experiment.sample.values())

    class StudySearch(OptunaSearch):
        stopping: Callable[[], bool] = staticmethod(lambda: False)
        deadline: "_Deadline | None" = None

        def __getstate__(self) -> dict:
            # Tune pickles the search algorithm into tuner.pkl and searcher checkpoints: keep the storage
            # (its URL may hold a password) and everything that reaches it out of those files. A search
            # resumes from the study (--resume), never from Tune's pickles.
            state = dict(self.__dict__)
            state.update(_storage=None, _ot_study=None, _ot_trials={}, stopping=None, deadline=None)
            return state

        def __setstate__(self, state: dict) -> None:
            self.__dict__.update(state)

        def save(self, checkpoint_path: str) -> None:
            import pickle

            with open(checkpoint_path, "wb") as f:
                pickle.dump(self.__getstate__(), f)

        def suggest(self, trial_id: str):
            if self.stopping and self.stopping():
                return None  # SIGINT/SIGTERM: no new trials
            if self.deadline is not None and self.deadline.passed():
                return Searcher.FINISHED  # the timeout: no new trials, running ones finish
            if stratified and trial_id not in self._ot_trials:
                # The next trial's number indexes the sequence (so a resumed study carries on
                # where it stopped); the enqueued values are fixed, the sampler draws the rest.
                index = len(self._ot_study.trials)
                retry_transient(lambda: self._ot_study.enqueue_trial(
                    experiment.stratified_values(index), skip_if_exists=False))
            params = super().suggest(trial_id)
            if params is not None:
                params[TRIAL_NUMBER_KEY] = self._ot_trials[trial_id].number
            return params

        def number(self, trial_id: str) -> int | None:
            t = self._ot_trials.get(trial_id)
            return None if t is None else t.number

        def note_failure(self, trial_id: str, message: str) -> None:
            t = self._ot_trials.get(trial_id)
            if t is None:
                return
            n = int(t.user_attrs.get("attempt_failures", 0)) + 1
            retry_transient(lambda: t.set_user_attr("attempt_failures", n))
            retry_transient(lambda: t.set_user_attr("last_error", message[-500:]))

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                return
            t = self._ot_trials[trial_id]
            values = None
            if result and FAILED_KEY in result:  # a configuration error: FAIL at once, never retried
                retry_transient(lambda: self._ot_study._storage.set_trial_system_attr(
                    t._trial_id, "fail_reason", str(result[FAILED_KEY])[-500:]))
            elif result and not error and ATTRS_KEY in result:
                values = [float(result[m]) for m in experiment.objectives]
                a = json.loads(result[ATTRS_KEY])
                for k, v in a.items():
                    retry_transient(lambda k=k, v=v: t.set_user_attr(k, v))
                st = self._ot_study._storage
                files = a.get(attrs.ARTIFACTS, {})
                entries = list(files.get("subnet", [])) + ([files["history"]] if "history" in files else [])
                retry_transient(lambda: record_artifacts(st, entries, trial_id=t._trial_id))
                for step, v in a.get(attrs.HISTORY_SUMMARY, {}).get("values", {}).items():
                    retry_transient(lambda step=step, v=v: st.set_trial_intermediate_value(t._trial_id, int(step), v))
                retry_transient(lambda: t.set_user_attr(COMPUTE_KEY, float(result.get(COMPUTE_KEY, 0.0))))
            state = TrialState.COMPLETE if values is not None else TrialState.FAIL
            retry_transient(lambda: self._ot_study.tell(t, values, state=state))
            self._completed_trials.add(trial_id)

    mode = ["max" if d == "maximize" else "min" for d in experiment.directions]
    space = {k: p.distribution() for k, p in experiment.sample.items()}
    return StudySearch(space=space, metric=list(experiment.objectives), mode=mode, sampler=sampler,
                       study_name=study_name, storage=storage)


def _progress_callback(searcher, outcome: SearchOutcome, say: Callable[[str], None], total: int | None,
                       t_start: float, objectives: tuple[str, ...] = ("quality", "latency_ms", "size_mb")):
    from ray.tune import Callback

    of = "" if total is None else f"/{total}"  # "[3/10]", or "[3]" under a timeout alone

    class Progress(Callback):
        def __init__(self) -> None:
            self.started: dict[str, float] = {}
            self.finished = 0

        def on_trial_start(self, iteration, trials, trial, **info):
            self.started.setdefault(trial.trial_id, time.perf_counter())
            outcome.ran += 1 if trial.trial_id not in getattr(self, "_seen", set()) else 0
            self.__dict__.setdefault("_seen", set()).add(trial.trial_id)

        def on_trial_recover(self, iteration, trials, trial, **info):
            msg = _error_text(trial)
            searcher.note_failure(trial.trial_id, msg)
            where = Path(trial.path) / "error.txt" if getattr(trial, "path", None) else None  # synced there
            say(f"trial {searcher.number(trial.trial_id)}: failed ({msg.splitlines()[-1] if msg else 'error'}); "
                "retrying" + (f" (traceback in {where})" if where else ""))

        def on_trial_error(self, iteration, trials, trial, **info):
            msg = _error_text(trial)
            self.finished += 1
            outcome.failed += 1
            say(f"trial {searcher.number(trial.trial_id)}: FAILED for good ({msg.splitlines()[-1] if msg else 'error'}) "
                f"[{self.finished}{of}]")

        def on_trial_complete(self, iteration, trials, trial, **info):
            r = trial.last_result or {}
            self.finished += 1
            num = searcher.number(trial.trial_id)
            if COMPUTE_KEY in r and trial.trial_id in self.started:
                wall = time.perf_counter() - self.started[trial.trial_id]
                outcome.timings.append(TrialTiming(trial=num, wall_s=wall, compute_s=float(r[COMPUTE_KEY]),
                                                   finished_s=time.perf_counter() - t_start))
            if FAILED_KEY in r:
                outcome.failed += 1
                say(f"trial {num}: FAILED, not retried ({r[FAILED_KEY]}) [{self.finished}{of}]")
                return
            vals = ", ".join(f"{m} {float(r[m]):.4g}" for m in objectives if m in r)
            on = f" (trained on {r[DEVICE_KEY]})" if DEVICE_KEY in r else ""
            say(f"trial {num}: complete: {vals}{on} [{self.finished}{of}]")

    return Progress()


def _error_text(trial) -> str:
    for attr in ("error_msg", "error_message"):
        v = getattr(trial, attr, None)
        if isinstance(v, str) and v:
            return v
    path = getattr(trial, "error_file", None)
    try:
        return Path(path).read_text() if path else ""
    except OSError:
        return ""
