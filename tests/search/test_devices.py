"""Where a trial trains (nas.search.devices), what it records, and the typed refusals before anything runs."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml

from nas.errors import ConfigError, DeviceError
from nas.search.devices import check_cluster_gpus, check_device, resolve_device, trial_device
from nas.search.experiment import Experiment
from tests.search.fixtures import experiment_file


@pytest.mark.parametrize("requested, gpus, cuda, expected", [
    ("cpu", None, True, "cpu"),
    ("cpu", 1, True, "cpu"),
    ("auto", None, True, "cuda:0"),  # outside Ray: every visible GPU is the trial's
    ("auto", 1, True, "cuda:0"),  # Ray gave it one (a fraction counts as one id)
    ("auto", 0, True, "cpu"),  # Ray gave it none: leave the GPU to the trials that have it
    ("auto", None, False, "cpu"),
    ("auto", 1, False, "cpu"),
    ("cuda", None, True, "cuda:0"),
    ("cuda:1", 2, True, "cuda:1"),
])
def test_resolve_device(requested, gpus, cuda, expected):
    assert resolve_device(requested, gpus, cuda) == expected


def test_cuda_without_cuda_names_the_torch_build():
    with pytest.raises(DeviceError) as e:
        resolve_device("cuda", None, False)
    msg = str(e.value)
    assert msg.startswith("device: cuda asked for") and torch.__version__ in msg
    assert f"CUDA {torch.version.cuda or 'none'}" in msg and len(msg.splitlines()) == 1


def test_cuda_without_a_gpu_from_ray_is_refused():
    with pytest.raises(DeviceError, match="Ray gave this trial no GPU; set run.gpus_per_trial > 0"):
        resolve_device("cuda", 0, True)


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:", "cuda:x", "CPU", "", 0, None])
def test_unknown_device_is_a_config_error(name):
    with pytest.raises(ConfigError, match=r"^device: unknown device .*expected auto, cpu, cuda or cuda:N"):
        check_device(name)
    with pytest.raises(ConfigError, match="^device: unknown device"):
        resolve_device(name, None, True)


def test_trial_device_with_this_torch(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert trial_device("auto", None) == "cpu" and trial_device() == "cpu"
    with pytest.raises(DeviceError, match=re.escape(f"torch {torch.__version__}")):
        trial_device("cuda", 1)


def test_cluster_without_gpus_is_refused():
    check_cluster_gpus(0, 0)
    check_cluster_gpus(0.5, 1)
    check_cluster_gpus(2, 2)
    with pytest.raises(DeviceError, match="^run.gpus_per_trial: 1 GPU.s. per trial, but the Ray cluster has 0"):
        check_cluster_gpus(1, 0)
    with pytest.raises(DeviceError, match="has 1;"):
        check_cluster_gpus(2, 1)


# -- the experiment's run: section -----------------------------------------------------------------

def run_yaml(tmp_path, **run):
    d = yaml.safe_load(experiment_file(tmp_path).read_text())
    d["run"].update(run)
    p = tmp_path / "e.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_gpus_per_trial_and_device_parse_and_round_trip(tmp_path):
    exp = Experiment.from_yaml(run_yaml(tmp_path, gpus_per_trial=0.5, device="cuda"))
    assert (exp.run.gpus_per_trial, exp.run.device) == (0.5, "cuda")
    assert Experiment.from_dict(json.loads(json.dumps(exp.to_dict())), source="db").run == exp.run
    plain = Experiment.from_yaml(experiment_file(tmp_path))
    assert (plain.run.gpus_per_trial, plain.run.device) == (0.0, "auto")


@pytest.mark.parametrize("run, where", [
    ({"gpus_per_trial": -1}, "run.gpus_per_trial: must be 0, a fraction below 1 or a whole number, got -1"),
    ({"gpus_per_trial": 1.5}, "run.gpus_per_trial: must be 0, a fraction below 1 or a whole number, got 1.5"),
    ({"gpus_per_trial": "one"}, "run.gpus_per_trial: expected a number"),
    ({"device": "tpu"}, "run.device: unknown device 'tpu'"),
    ({"device": 1}, "run.device: unknown device 1"),
    ({"device": "cuda"}, "run.device: cuda needs run.gpus_per_trial > 0"),
    ({"device": "cpu", "gpus_per_trial": 1}, "run.gpus_per_trial: 1 GPU(s) reserved per trial, but run.device is cpu"),
])
def test_run_field_errors(tmp_path, run, where):
    p = run_yaml(tmp_path, **run)
    with pytest.raises(ConfigError) as e:
        Experiment.from_yaml(p)
    assert str(e.value) == f"{p}: {where}" or str(e.value).startswith(f"{p}: {where}"), str(e.value)


# -- the trial records its device ---------------------------------------------------------------------

def job_for(tmp_path, **run):
    exp = Experiment.from_yaml(run_yaml(tmp_path, **run))
    return {"experiment": exp.to_dict(), "study": "s", "runs_dir": str(tmp_path / "runs"),
            "artifact_store": str(tmp_path / "store")}


def test_cpu_trial_records_its_device(tmp_path, monkeypatch):
    from nas.search.artifacts import ensure_writable
    from nas.search.worker import ATTRS_KEY, DEVICE_KEY, TRIAL_NUMBER_KEY, run_trial

    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    job = job_for(tmp_path)
    ensure_writable(job["artifact_store"])
    params = {TRIAL_NUMBER_KEY: 0, "target_fraction": 0.6, "lambda0": 1.0, "loss": "hinge", "seed": 3}
    report = run_trial(params, job, gpus_assigned=0)  # as under Ray with gpus_per_trial: 0
    a = json.loads(report[ATTRS_KEY])
    assert report[DEVICE_KEY] == a[DEVICE_KEY] == "cpu"


def test_trial_asking_cuda_without_it_fails_naming_the_torch_build(tmp_path, monkeypatch):
    from nas.search.worker import TRIAL_NUMBER_KEY, run_trial

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    job = job_for(tmp_path, gpus_per_trial=1, device="cuda")
    params = {TRIAL_NUMBER_KEY: 0, "target_fraction": 0.6, "lambda0": 1.0, "loss": "hinge", "seed": 3}
    with pytest.raises(DeviceError, match=re.escape(f"torch {torch.__version__} (CUDA ")):
        run_trial(params, job, gpus_assigned=1)
    assert not (tmp_path / "runs").exists()  # refused before any compute


@pytest.mark.ray
def test_gpus_per_trial_on_a_cluster_without_gpus_is_refused_before_anything_is_written(tmp_path):
    from nas.search.runner import run_search

    exp = Experiment.from_yaml(run_yaml(tmp_path, gpus_per_trial=1))
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(DeviceError, match="run.gpus_per_trial: 1 GPU.s. per trial, but the Ray cluster has 0"):
        run_search(exp, storage=f"sqlite:///{work}/s.db", runs_dir=work / "runs", artifacts=str(work / "store"),
                   num_cpus=1, num_gpus=0, log=lambda _line: None)
    assert list(work.iterdir()) == []  # no database, no artifact store, no run folder
