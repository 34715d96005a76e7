"""The search service end to end on a real local Ray (2 CPUs) and real storages.

Light trials (tests/search/trials.py: real subnets, no training) check fault
tolerance; the shipped smoke experiment runs the real trainer against both
storages; the driver-kill test runs ``nas search`` as users do, in a subprocess.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.search import api, attrs
from nas.search.experiment import Experiment, stratum_shift
from nas.files import sha256_file
from nas.search.worker import DEVICE_KEY
from tests.search.fixtures import experiment_file, tiny_table

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    old = os.environ.get("NAS_TEST_FAULTS")
    os.environ["NAS_TEST_FAULTS"] = str(d)
    os.environ.setdefault("NAS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    from nas.search.runner import _init_ray

    _init_ray(address=None, num_cpus=2)  # one local Ray for this module; run_search reuses it
    yield d
    import ray

    ray.shutdown()
    if old is None:
        os.environ.pop("NAS_TEST_FAULTS", None)


def check_complete_trial(t, exp, store_url, storage, tmp=None, study_tables=None):
    """Every attribute of a COMPLETE trial, and its subnet as the artifact store holds it."""
    import tempfile

    from optuna.artifacts import get_all_artifact_meta

    from nas import format_arch, load_space, load_subnet
    from nas.latency import latency_ms, load_table
    from nas.search.artifacts import download_files, get_store

    ua = t.user_attrs
    for key in (attrs.ARCH, attrs.ARCH_SUMMARY, attrs.CONFIG, attrs.METRICS, attrs.HISTORY_SUMMARY, attrs.ARTIFACTS,
                attrs.SUBNET_SHA256, attrs.SPACE, attrs.LATENCY_TABLE, attrs.NAS_VERSION, attrs.NODE):
        assert key in ua, key
    assert attrs.SUBNET_DIR not in ua and ua[attrs.NODE]["node_id"] and ua[attrs.NODE]["host"]
    assert ua[DEVICE_KEY] == "cpu"  # gpus_per_trial 0: Ray gave it no GPU
    assert len(json.dumps(ua)) < 4096, json.dumps(ua)  # compact: the history is an artifact
    entries = ua[attrs.ARTIFACTS]["subnet"] + [ua[attrs.ARTIFACTS]["history"]]
    assert {m.artifact_id for m in get_all_artifact_meta(t, storage=storage)} == {e["artifact_id"] for e in entries}  # as the dashboard lists
    want = {int(k): v for k, v in ua[attrs.HISTORY_SUMMARY]["values"].items()}
    assert t.intermediate_values == pytest.approx(want)  # the step losses, for the dashboard's history plots
    space, table = load_space(exp.space), load_table(exp.latency_table)
    m = ua[attrs.METRICS]
    assert list(t.values) == pytest.approx([m["quality_after"], m["latency_ms"], m["size_mb"]])
    assert m["latency_ms"] == pytest.approx(latency_ms(table, space, ua[attrs.ARCH]))
    assert ua[attrs.ARCH_SUMMARY] == format_arch(space, ua[attrs.ARCH])
    assert ua[attrs.CONFIG]["seed"] == t.params["seed"] and ua[attrs.SPACE]["hash"] == space.hash
    assert ua[attrs.LATENCY_TABLE]["space_hash"] == space.hash
    sub_dir = download_files(get_store(store_url), entries, Path(tempfile.mkdtemp(dir=tmp)))
    assert len(json.loads((sub_dir / "history.json").read_text())) == ua[attrs.HISTORY_SUMMARY]["steps"]
    assert sha256_file(sub_dir / "model.safetensors") == ua[attrs.SUBNET_SHA256]
    assert load_subnet(sub_dir).arch == ua[attrs.ARCH]
    from nas.latency.table import table_sha256

    lt = ua[attrs.LATENCY_TABLE]  # pinned by hash; the study stores that table as an artifact
    assert lt["sha256"] == table_sha256(table)
    if study_tables is not None:
        (copy,) = download_files(get_store(store_url), [study_tables[lt["sha256"]]], Path(tempfile.mkdtemp(dir=tmp))
                                 ).glob("*.json")
        assert table_sha256(load_table(copy)) == lt["sha256"]
    if attrs.HEAD_SHA256 in ua:  # a trial that trained a task head keeps it next to the subnet
        assert sha256_file(sub_dir / "head.safetensors") == ua[attrs.HEAD_SHA256]
    else:
        assert not (sub_dir / "head.safetensors").exists()


def test_trial_raising_or_killed_is_retried(faults, tmp_path):
    exp = Experiment.from_yaml(experiment_file(tmp_path, run={"trials": 4, "concurrency": 2, "max_failures": 2}))
    (faults / "raise_first").touch()
    (faults / "kill_first").touch()  # that trial's process SIGKILLs itself
    url = f"sqlite:///{tmp_path}/s.db"
    lines = []
    out = api.run_search(exp, storage=url, num_cpus=2, log=lines.append)
    assert (out.complete, out.ran, out.failed) == (4, 4, 0)
    # each trial's own progress line reached the driver's log, prefixed with its number
    for n in range(4):
        assert any(line.startswith(f"trial {n}: light trial: L") for line in lines), (n, lines)
    assert (faults / "raise_first.done").exists() and (faults / "kill_first.done").exists()
    study = optuna.load_study(study_name="tiny", storage=url)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert sum(t.user_attrs.get("attempt_failures", 0) for t in study.trials) == 2
    for t in study.trials:
        check_complete_trial(t, exp, study.user_attrs["artifact_store"], study._storage,
                             study_tables=study.user_attrs["latency_tables"])
    assert len(out.timings) == 4 and all(t.compute_s > 0 for t in out.timings)


def test_trial_failing_every_attempt_ends_failed(faults, tmp_path):
    exp = Experiment.from_yaml(experiment_file(tmp_path, run={"trials": 1, "max_failures": 1}))
    (faults / "raise_always").touch()
    try:
        out = api.run_search(exp, storage=f"sqlite:///{tmp_path}/s.db", num_cpus=2)
    finally:
        (faults / "raise_always").unlink()
    assert (out.complete, out.failed) == (0, 1)
    (t,) = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/s.db").trials
    assert t.state == TrialState.FAIL
    assert t.user_attrs["attempt_failures"] == 1 and "injected failure" in t.user_attrs["last_error"]


def test_timeout_stops_new_trials_and_lets_running_ones_finish(faults, tmp_path):
    """``run.timeout_s`` without ``run.trials``: trials run one after another until the deadline; the one running
    then finishes and is recorded; nothing is left RUNNING or FAIL."""
    exp = Experiment.from_yaml(experiment_file(tmp_path, run={"trials": None, "timeout_s": 10, "concurrency": 1}))
    (faults / "sleep_s").write_text("1.5")
    url, lines = f"sqlite:///{tmp_path}/s.db", []
    try:
        out = api.run_search(exp, storage=url, num_cpus=2, log=lines.append)
    finally:
        (faults / "sleep_s").unlink()
    assert out.timed_out and out.requested is None and out.failed == 0
    assert 1 <= out.complete < 20 and out.complete == out.ran
    assert any(line.startswith("timeout: 10 s passed") for line in lines), lines
    assert out.wall_s >= 10
    starts = [t.finished_s - t.wall_s for t in out.timings]
    assert len(starts) == out.complete and max(starts) < 10 + 2  # none started after the deadline
    study = optuna.load_study(study_name="tiny", storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * out.complete
    # a count reached before the timeout: the count ends the search, not the clock
    more = api.run_search(exp, storage=url, trials=out.complete + 1, resume=True, num_cpus=2, timeout_s=600)
    assert (more.complete, more.timed_out) == (out.complete + 1, False)


@pytest.mark.parametrize("timeout", [0, -5, float("nan"), float("inf")])
def test_bad_timeout_is_refused_before_anything_starts(tmp_path, timeout):
    from nas.errors import ConfigError

    exp = Experiment.from_yaml(experiment_file(tmp_path))
    with pytest.raises(ConfigError, match=r"^timeout: must be a positive number of seconds"):
        api.run_search(exp, storage=f"sqlite:///{tmp_path}/s.db", timeout_s=timeout)
    assert not (tmp_path / "s.db").exists()


def test_stratified_target_is_swept_across_resumes(faults, tmp_path):
    """A stratified target_fraction: trial n gets the n-th point of the sequence, also after a resume,
    while TPE samples the other fields."""
    exp = Experiment.from_yaml(experiment_file(
        tmp_path, run={"trials": 2, "concurrency": 1}, sampler={"name": "tpe", "seed": 3},
        sample={"target_fraction": {"float": [0.3, 0.9], "stratified": True}, "seed": {"int": [0, 100000]}}))
    url = f"sqlite:///{tmp_path}/s.db"
    assert api.run_search(exp, storage=url, num_cpus=2).complete == 2
    assert api.run_search(exp, storage=url, trials=4, resume=True, num_cpus=2).complete == 4
    study = optuna.load_study(study_name="tiny", storage=url)
    shift = stratum_shift(3)
    want = [exp.sample["target_fraction"].stratified_value(n, shift) for n in range(4)]
    assert [t.params["target_fraction"] for t in sorted(study.trials, key=lambda t: t.number)] == pytest.approx(want)
    assert sorted(round(((v - 0.3) / 0.6 - shift) % 1.0 * 4) % 4 for v in want) == [0, 1, 2, 3]  # one per quarter
    assert len({t.params["seed"] for t in study.trials}) > 1
    for t in study.trials:
        check_complete_trial(t, exp, study.user_attrs["artifact_store"], study._storage,
                             study_tables=study.user_attrs["latency_tables"])
        assert t.user_attrs[attrs.CONFIG]["target_fraction"] == pytest.approx(t.params["target_fraction"])


@pytest.mark.slow
def test_smoke_experiment(faults, storage_url, study_name, tmp_path):
    """experiments/smoke.yaml with the real trainer (on the hand-made tiny-bert table), 3 trials."""
    exp = Experiment.from_yaml(ROOT / "experiments" / "smoke.yaml")
    exp = dataclasses.replace(exp, latency_table=str(tiny_table(tmp_path / "tiny.json")))
    lines = []
    out = api.run_search(exp, storage=storage_url, study=study_name, trials=3, runs_dir=tmp_path / "runs",
                         artifacts=str(tmp_path / "artifacts"), num_cpus=2, log=lines.append)
    assert out.complete == 3
    for n in range(3):  # the real trainer's per-step lines, relayed from the Ray workers
        assert any(line.startswith(f"trial {n}: ") and " step " in line for line in lines), (n, lines[:20])
    st = storage_url.replace("postgresql://", "postgresql+psycopg2://")
    study = optuna.load_study(study_name=study_name, storage=st)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    for t in study.trials:
        check_complete_trial(t, exp, study.user_attrs["artifact_store"], study._storage,
                             study_tables=study.user_attrs["latency_tables"])
        assert t.user_attrs[attrs.METRICS]["metric"] == "accuracy" and t.intermediate_values  # the real trainer's losses
        assert attrs.HEAD_SHA256 in t.user_attrs  # wordnet-nouns keeps its head
    front = api.load_front(study_name, storage=storage_url)
    assert front and {p.trial for p in front} <= {0, 1, 2}


def nas_cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, env=env, **kw)


def count(url, state):
    try:
        return sum(t.state == state for t in optuna.load_study(study_name="tiny", storage=url).trials)
    except KeyError:
        return 0


def test_driver_killed_then_resumed(tmp_path):
    """SIGKILL the `nas search` driver mid-run; --resume finishes with no complete trial lost or duplicated."""
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sleep_s").write_text("3")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NAS_TEST_FAULTS": str(faults),
           "NAS_CACHE_DIR": str(tmp_path / "cache")}
    exp = experiment_file(tmp_path)
    url = f"sqlite:///{tmp_path}/s.db"
    args = ("search", str(exp), "--storage", url, "--trials", "4", "--concurrency", "2", "--num-cpus", "2")
    driver = subprocess.Popen([sys.executable, "-m", "nas.cli", *args], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while count(url, TrialState.COMPLETE) < 1 and time.time() < deadline and driver.poll() is None:
            time.sleep(0.2)
        assert driver.poll() is None, driver.stdout.read().decode()[-2000:]
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # the local Ray this driver started
        except ProcessLookupError:
            pass
    time.sleep(1)
    study = optuna.load_study(study_name="tiny", storage=url)
    before = {t.number: t.user_attrs[attrs.SUBNET_SHA256] for t in study.trials if t.state == TrialState.COMPLETE}
    running = [t.number for t in study.trials if t.state == TrialState.RUNNING]
    assert 1 <= len(before) < 4

    (faults / "sleep_s").unlink()
    r = nas_cli(*args, "--resume", "-f", "json", env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    study = optuna.load_study(study_name="tiny", storage=url)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 4  # exactly the requested trials
    assert {t.number: t.user_attrs[attrs.SUBNET_SHA256] for t in done if t.number in before} == before
    assert all(study.trials[n].state == TrialState.FAIL for n in running)
    assert len({t.user_attrs[attrs.ARTIFACTS]["subnet"][0]["artifact_id"] for t in done}) == 4
    front = json.loads(r.stdout)
    assert front and all({"trial", "values", "arch"} <= set(row) for row in front)

    # the same study through `nas pareto` / `nas studies`, as users query it
    csv = nas_cli("pareto", "--study", "tiny", "--storage", url, "-f", "csv", "--plot", str(tmp_path / "f.png"),
                  env=env).stdout
    assert csv.splitlines()[0] == "trial,quality,latency_ms,size_mb,arch" and len(csv.splitlines()) == len(front) + 1
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    table = nas_cli("studies", "--storage", url, env=env).stdout
    assert "tiny" in table and "quality,latency_ms,size_mb" in table
    again = nas_cli(*args, "--resume", env=env, cwd=tmp_path, timeout=120)
    assert again.returncode == 0 and "nothing to run" in again.stderr
