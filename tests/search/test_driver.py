"""The search driver under faults users meet: a configuration error, signals, two drivers, a password.

Each runs ``nas search`` as users do (a subprocess with its own local Ray) on the
light plug-in (tests/search/trials.py: real subnets, no training).
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.search.conftest import PG_URL, require_postgres
from tests.search.fixtures import experiment_file

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.ray


def env_for(tmp_path: Path, faults: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NAS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NAS_STORAGE", None)
    if faults is not None:
        env["NAS_TEST_FAULTS"] = str(faults)
    return env


def states(url: str, study: str = "tiny") -> dict[str, int]:
    try:
        trials = optuna.load_study(study_name=study, storage=url).trials
    except KeyError:
        return {}
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def start_driver(args, env, cwd):
    return subprocess.Popen([sys.executable, "-m", "nas.cli", *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(pred, driver, timeout=180):
    deadline = time.time() + timeout
    while not pred():
        assert driver.poll() is None, driver.stdout.read()[-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def kill_group(driver):
    try:
        os.killpg(driver.pid, signal.SIGKILL)  # the local Ray this driver started
    except ProcessLookupError:
        pass


def test_configuration_error_is_not_retried(tmp_path):
    """A ConfigError ends its trial FAIL at once; a RuntimeError is retried with one line, its traceback in a file."""
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "config_error_first").touch()
    (faults / "raise_first").touch()
    url = f"sqlite:///{tmp_path}/s.db"
    exp = experiment_file(tmp_path, run={"trials": 3, "concurrency": 1, "max_failures": 2})
    r = subprocess.run([sys.executable, "-m", "nas.cli", "search", str(exp), "--storage", url, "--num-cpus", "2"],
                       env=env_for(tmp_path, faults), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr[-3000:]  # fewer complete trials than requested
    assert "2 complete trial(s) (requested 3); 1 failed in this run" in r.stderr
    study = optuna.load_study(study_name="tiny", storage=url)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and len(study.trials) == 3
    assert "attempt_failures" not in failed[0].user_attrs  # failed once, never retried
    assert "injected configuration error" in failed[0].system_attrs["fail_reason"]
    assert "FAILED, not retried (ConfigError: target_ms: injected configuration error" in r.stderr
    assert sum(t.user_attrs.get("attempt_failures", 0) for t in study.trials) == 1  # the RuntimeError's retry
    retry = next(line for line in r.stderr.splitlines() if "retrying" in line)
    assert "RuntimeError: injected failure (raise_first)" in retry
    assert "raise RuntimeError(" in Path(retry.split("(traceback in ", 1)[1].rstrip(")")).read_text()  # the frames
    assert "Traceback" not in r.stderr and "Token authentication" not in r.stderr


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_records_finished_trials_and_resume_finishes(tmp_path, sig, code):
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sleep_s").write_text("4")
    env = env_for(tmp_path, faults)
    url = f"sqlite:///{tmp_path}/s.db"
    args = ("search", str(experiment_file(tmp_path)), "--storage", url, "--trials", "5", "--concurrency", "2",
            "--num-cpus", "2")
    driver = start_driver(args, env, tmp_path)
    try:
        wait_for(lambda: states(url).get("COMPLETE", 0) >= 1 and states(url).get("RUNNING", 0) >= 1, driver)
        driver.send_signal(sig)
        out, _ = driver.communicate(timeout=120)
    finally:
        kill_group(driver)
    assert driver.returncode == code, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"nas: interrupted by {sig.name}") and "--resume" in last, out[-2000:]
    assert "Tuner.restore" not in out and "Traceback" not in out
    s = states(url)
    assert s.get("RUNNING", 0) == 0 and s.get("COMPLETE", 0) >= 1 and s.get("FAIL", 0) >= 1, s
    study = optuna.load_study(study_name="tiny", storage=url)
    assert all(t.system_attrs.get("fail_reason") == f"interrupted by {sig.name}"
               for t in study.trials if t.state == TrialState.FAIL)
    complete_before = {t.number for t in study.trials if t.state == TrialState.COMPLETE}
    if sig != signal.SIGINT:
        return  # resuming does not depend on which signal stopped the driver: checked once, after SIGINT

    (faults / "sleep_s").unlink()
    r = subprocess.run([sys.executable, "-m", "nas.cli", *args, "--resume"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    study = optuna.load_study(study_name="tiny", storage=url)
    done = {t.number for t in study.trials if t.state == TrialState.COMPLETE}
    assert len(done) == 5 and complete_before <= done


def test_second_driver_is_refused_and_first_is_unharmed(tmp_path):
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "hold").touch()  # the first driver's trials wait until both refusals are checked
    env = env_for(tmp_path, faults)
    url = f"sqlite:///{tmp_path}/s.db"
    args = ("search", str(experiment_file(tmp_path)), "--storage", url, "--trials", "3", "--concurrency", "1",
            "--num-cpus", "2")
    first = start_driver(args, env, tmp_path)
    try:
        wait_for(lambda: states(url).get("RUNNING", 0) >= 1, first)
        for extra in ((), ("--resume",)):  # a second terminal, and a --resume while the first runs
            r = subprocess.run([sys.executable, "-m", "nas.cli", *args, *extra], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 1, r.stderr[-2000:]
            assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
            want = "another search driver" if extra else "already exists; pass --resume"
            assert want in r.stderr, r.stderr
        assert first.poll() is None and states(url) == {"RUNNING": 1}  # still running its first trial
        (faults / "hold").unlink()
        out, _ = first.communicate(timeout=240)
    finally:
        kill_group(first)
    assert first.returncode == 0, out[-3000:]
    assert states(url) == {"COMPLETE": 3}  # nothing marked FAIL, nothing duplicated


def test_simultaneous_creation_gives_one_study_and_one_typed_refusal(tmp_path):
    faults = tmp_path / "faults"
    faults.mkdir()
    env = env_for(tmp_path, faults)
    url = f"sqlite:///{tmp_path}/s.db"
    args = ("search", str(experiment_file(tmp_path)), "--storage", url, "--trials", "2", "--concurrency", "1",
            "--num-cpus", "1")
    drivers = [start_driver(args, env, tmp_path) for _ in range(2)]
    outs = []
    try:
        for d in drivers:
            outs.append(d.communicate(timeout=300)[0])
    finally:
        for d in drivers:
            kill_group(d)
    codes = sorted(d.returncode for d in drivers)
    assert codes == [0, 1], outs
    refused = outs[[d.returncode for d in drivers].index(1)]
    assert "Traceback" not in refused and ("another search driver" in refused or "already exists" in refused), refused
    assert states(url) == {"COMPLETE": 2}


@pytest.mark.postgres
def test_postgres_password_never_reaches_disk(tmp_path):
    require_postgres()
    password = f"pw-{uuid.uuid4().hex}"
    user = f"nas_pw_{uuid.uuid4().hex[:8]}"
    admin = PG_URL.replace("postgresql://", "postgresql+psycopg2://")
    import sqlalchemy

    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    db = user  # a database of its own: the role owns everything in it, and dropping it leaves nothing behind
    with engine.connect() as c:
        c.execute(sqlalchemy.text(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'"))
        c.execute(sqlalchemy.text(f"CREATE DATABASE {db} OWNER {user}"))
    host = PG_URL.split("@", 1)[1].rsplit("/", 1)[0]
    url = f"postgresql://{user}:{password}@{host}/{db}"
    study = f"pw-{uuid.uuid4().hex[:8]}"
    ray_tmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths have a length limit
    env = {**env_for(tmp_path), "RAY_TMPDIR": str(ray_tmp)}
    try:
        r = subprocess.run([sys.executable, "-m", "nas.cli", "search", str(experiment_file(tmp_path)),
                            "--storage", url, "--study", study, "--trials", "2", "--concurrency", "2",
                            "--num-cpus", "2", "--runs-dir", str(tmp_path / "runs")],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert password not in r.stdout + r.stderr
        assert states(url.replace("postgresql://", "postgresql+psycopg2://"), study) == {"COMPLETE": 2}
        scanned, found = 0, []
        for root in (tmp_path, ray_tmp):
            for p in root.rglob("*"):
                if p.is_file() and not p.is_symlink():
                    scanned += 1
                    try:
                        if password.encode() in p.read_bytes():
                            found.append(str(p))
                    except OSError:
                        pass
        assert scanned > 20
        assert any((tmp_path / "runs" / "ray").rglob("*.pkl")), "Tune wrote no pickles: the test scans nothing"
        assert not found, found
    finally:
        with engine.connect() as c:
            c.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            c.execute(sqlalchemy.text(f"DROP ROLE IF EXISTS {user}"))
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.parametrize("address, words", [
    ("127.0.0.1:1", "no Ray cluster answers at 127.0.0.1:1 within 5 s"),
    ("ray://127.0.0.1:1", "ray://127.0.0.1:1"),
    ("http://host:1", "expected auto, HOST:PORT or ray://HOST:PORT"),
])
def test_unreachable_ray_is_one_line_and_leaves_nothing(tmp_path, address, words):
    exp = experiment_file(tmp_path / "exp") if (tmp_path / "exp").mkdir() is None else None
    work = tmp_path / "work"
    work.mkdir()
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "nas.cli", "search", str(exp), "--storage", f"sqlite:///{work}/s.db",
                        "--address", address], env=env_for(tmp_path), cwd=work, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and time.time() - t < 60, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr
    assert list(work.iterdir()) == []  # no database, no artifact store, no run folder
