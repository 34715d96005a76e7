"""Every bad input is a typed one-line error, raised before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.errors import ConfigError, LatencyTableError, ModelError, StorageError
from nas.export import export_trial
from tests.export.conftest import SMALL, make_study

ROOT = Path(__file__).resolve().parents[2]


def _export(fixture, out, **kw):
    kw.setdefault("storage", fixture.url)
    kw.setdefault("study", fixture.name)
    return export_trial(out=out, **kw)


@pytest.mark.parametrize(("kw", "error", "message"), [
    ({"study": "nope", "trial": 0}, StorageError, r"study 'nope': no such study in this storage \(studies: smoke\)"),
    ({"trial": 99}, StorageError, r"trial: study 'smoke' has no trial 99"),
    ({"max_latency_ms": 0.1}, ConfigError, r"max_latency_ms: no trial fits 0.1 ms \(fastest is trial 2 at 0.129 ms\)"),
    ({}, ConfigError, r"rule: choose exactly one of --trial, --max-latency, --best-quality"),
    ({"trial": 0, "best_quality": True}, ConfigError, r"rule: choose exactly one .* \(got trial, best_quality\)"),
    ({"trial": 0, "shapes": [(1, 8), (2, 8)]}, ConfigError, r"shapes: need at least 3 distinct"),
    ({"trial": 0, "tolerance": 0}, ConfigError, r"tolerance: must be > 0"),
])
def test_bad_options(smoke_study, tmp_path, kw, error, message):
    with pytest.raises(error, match=message):
        _export(smoke_study, tmp_path / "o", **kw)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("state", ["running", "failed"])
def test_trial_not_complete(smoke_study, tmp_path, state):
    n = smoke_study.numbers[state]
    word = {"running": "RUNNING", "failed": "FAIL"}[state]
    with pytest.raises(StorageError, match=rf"trial: trial {n} of study 'smoke' is {word}, not COMPLETE"):
        _export(smoke_study, tmp_path / "o", trial=n)


def test_storage_missing_or_unset(smoke_study, tmp_path, monkeypatch):
    with pytest.raises(StorageError, match=r"storage: no study database at .*nothing\.db;"):
        _export(smoke_study, tmp_path / "o", storage=f"sqlite:///{tmp_path / 'nothing.db'}", trial=0)
    assert not (tmp_path / "nothing.db").exists()
    monkeypatch.delenv("NAS_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)  # the default ./nas_studies.db does not exist here
    with pytest.raises(StorageError, match=r"storage: no study database at .*nas_studies\.db;"):
        _export(smoke_study, tmp_path / "o", storage=None, trial=0)
    with pytest.raises(StorageError, match=r"storage: unknown scheme 'ftp'"):
        _export(smoke_study, tmp_path / "o", storage="ftp://x", trial=0)
    monkeypatch.setenv("NAS_STORAGE", smoke_study.url)
    m = _export(smoke_study, tmp_path / "o", storage=None, trial=smoke_study.numbers["small"], measure_latency=False)
    assert m["ok"]


@pytest.fixture
def own_study(tmp_path):
    """A one-trial study whose files a test may damage."""
    return make_study(tmp_path / "own", "own", {"small": SMALL}, extra_states=False)


def test_missing_weights(own_study, tmp_path):
    (own_study.root / "own" / "small" / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"subnet_dir: weights of trial 0 not found: .*model.safetensors"):
        _export(own_study, tmp_path / "o", trial=0)


def test_corrupted_weights_fail_the_recorded_sha256(own_study, tmp_path):
    w = own_study.root / "own" / "small" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"subnet_sha256: .* has sha256 \w+…, trial 0 recorded \w+… \(corrupted or replaced\)"):
        _export(own_study, tmp_path / "o", trial=0)


def test_corrupt_weights_file_with_matching_sha(tmp_path):
    """A file that was already broken when its sha256 was recorded still fails to load, as a typed error."""
    def damage(d):
        (d / "model.safetensors").write_bytes(b"not a safetensors file")

    study = make_study(tmp_path / "own", "own", {"small": SMALL}, extra_states=False, after_save=damage)
    with pytest.raises(ModelError, match=r"subnet: .*model.safetensors is corrupt"):
        _export(study, tmp_path / "o", trial=0)


def test_missing_latency_table(own_study, tmp_path):
    (own_study.root / "tiny-bert.table.json").unlink()
    for copy in (own_study.root / "own" / "tables").iterdir():  # the study's stored copy too
        copy.unlink()
    with pytest.raises(LatencyTableError, match=r"trial 0: .*no latency table has sha256 [0-9a-f]{64}; recorded path "
                                                r"'.*tiny-bert.table.json': .*no such latency table file"):
        _export(own_study, tmp_path / "o", trial=0)


def _cli(*args, env=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "nas.cli", "export", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_cli_bad_input_is_one_line_exit_1(smoke_study, tmp_path):
    r = _cli("--study", "nope", "--storage", smoke_study.url, "--trial", "0", "--out", str(tmp_path / "o"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["nas: error: study 'nope': no such study in this storage (studies: smoke)"]
    r = _cli("--study", "smoke", "--storage", smoke_study.url, "--max-latency", "0.05", "--out", str(tmp_path / "o"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == "nas: error: max_latency_ms: no trial fits 0.05 ms (fastest is trial 2 at 0.129 ms)"
    assert not (tmp_path / "o").exists()


def test_cli_exports_and_refuses_to_overwrite(smoke_study, tmp_path):
    out = tmp_path / "o"
    args = ("--study", "smoke", "--storage", smoke_study.url, "--trial", str(smoke_study.numbers["small"]),
            "--out", str(out), "--no-latency", "-f", "json")
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True and (out / "manifest.json").is_file()
    r = _cli(*args)  # --force is covered in-process (test_export.py::test_existing_out_needs_force)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [f"nas: error: out: {out} exists; pass --force "
                                                                  "(force=True) to replace it"]


def test_cli_hides_the_storage_password(tmp_path):
    r = _cli("--study", "s", "--storage", "postgresql://user:hunter2@127.0.0.1:1/db", "--trial", "0",
             "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "hunter2" not in r.stderr and "***" in r.stderr
