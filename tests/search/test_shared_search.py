"""`nas search` with a study-level shared supernet, end to end (tiny-bert, a hand-made WordNet, local Ray).

The supernet is trained once, stored with the study and recorded by hash; every trial starts from
it and records the hash; a resumed search, and ``nas supernet train`` on the same study, reuse it
instead of training again; ``nas pareto`` reports how the inherited-weights quality ranks trials.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from nas.search import attrs
from nas.search.shared import STUDY_SHARED
from tests.trainers.conftest import write_wordnet

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]


def experiment(tmp: Path) -> Path:
    d = yaml.safe_load((ROOT / "experiments" / "smoke.yaml").read_text())
    d.update(name="shared", supernet={"steps": 3, "random_archs": 1, "lr": 1.0e-3, "batch_size": 8,
                                      "autocast": "none", "log_every": 1})
    d["trainer"].pop("finetune_steps")  # sampled below: the front trades the fine-tuning budget
    d["trainer"].update(freeze_weights=True, steps=4, warmup_steps=0, max_train=64, max_eval=32,
                        teacher_max_train=96)
    d["sample"] = {"target_fraction": {"float": [0.5, 0.9], "stratified": True}, "seed": {"int": [0, 3]},
                   "finetune_steps": {"int": [1, 3]}}
    d["run"].update(concurrency=1)
    p = tmp / "shared.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_trained_once_and_every_trial_starts_from_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "NAS_WORDNET_DIR": str(write_wordnet(tmp_path / "wordnet")), "NAS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NAS_STORAGE", None)
    exp, url = experiment(tmp_path), f"sqlite:///{tmp_path}/s.db"

    def nas(*args):
        return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=600)

    r = nas("search", str(exp), "--storage", url, "--trials", "2", "--num-cpus", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert sum(line.startswith("supernet step 3/3 ") for line in r.stderr.splitlines()) == 1, r.stderr[-3000:]
    study = optuna.load_study(study_name="shared", storage=url)
    (entry,) = study.user_attrs[STUDY_SHARED].values()
    assert entry["steps"] == 3 and {f["filename"] for f in entry["files"]} == {"supernet.safetensors", "supernet.json"}
    assert entry["trained_by"]["task_id"] and entry["trained_by"]["device"] == "cpu"  # a Ray task, not the driver
    assert f"(Ray task on node {entry['trained_by']['node_id'][:12]})" in r.stderr
    for t in study.trials:
        assert t.state == TrialState.COMPLETE
        assert t.user_attrs[attrs.SHARED_SUPERNET] == entry["sha256"]
        assert t.user_attrs[attrs.CONFIG]["shared_supernet"] == entry["sha256"]
        assert t.user_attrs[attrs.CONFIG]["freeze_weights"] is True
    assert any(f"starts from shared supernet {entry['sha256'][:12]}" in line for line in r.stderr.splitlines())

    r = nas("search", str(exp), "--storage", url, "--trials", "3", "--resume", "--num-cpus", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert not any(line.startswith("supernet step") for line in r.stderr.splitlines())  # never retrained
    assert f"supernet: the study holds shared supernet {entry['sha256'][:12]}" in r.stderr
    study = optuna.load_study(study_name="shared", storage=url)
    assert len(study.user_attrs[STUDY_SHARED]) == 1
    assert [t.user_attrs[attrs.SHARED_SUPERNET] for t in study.trials] == [entry["sha256"]] * 3

    r = nas("supernet", "train", str(exp), "--storage", url, "-f", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["sha256"] == entry["sha256"] and "reusing it" in r.stderr
    r = nas("supernet", "train", str(exp), "--storage", url, "--study", "alone", "-f", "json")
    assert r.returncode == 0, r.stderr[-3000:]
    (alone,) = optuna.load_study(study_name="alone", storage=url).user_attrs[STUDY_SHARED].values()
    assert alone["steps"] == 3 and "task_id" not in alone["trained_by"]  # `nas supernet train`: in its own process

    r = nas("pareto", "--study", "shared", "--storage", url)
    assert r.returncode == 0 and "proxy: Kendall tau between quality before fine-tuning" in r.stderr, r.stderr
    assert "over 3 complete trials" in r.stderr

    # the study report of experiments/studies/shared_supernet.py reads the same study (and never creates storage)
    script = ROOT / "experiments" / "studies" / "shared_supernet.py"
    rep = subprocess.run([sys.executable, str(script), "--study", "shared", "--storage", url, "--out",
                          str(tmp_path / "report")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    doc = json.loads((tmp_path / "report.json").read_text())
    (arm,) = doc["arms"].values()
    assert arm["trials"] == 3 and arm["supernet_steps"] == 3 and len(arm["rows"]) == 3
    assert f"{arm['kendall_tau']:.3f}" in r.stderr  # the τ nas pareto printed
    assert "# Shared supernet study `shared`" in (tmp_path / "report.md").read_text()
    missing = subprocess.run([sys.executable, str(script), "--study", "shared", "--storage",
                              f"sqlite:///{tmp_path}/nope.db", "--out", str(tmp_path / "nope")],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert missing.returncode == 1 and missing.stderr.startswith("error: ")
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "nope.json").exists()


def test_a_corrupt_stored_supernet_fails_the_trial_naming_both_hashes(tmp_path):
    from nas.errors import StorageError
    from nas.search.artifacts import get_store, upload_files
    from nas.search.shared import fetch_shared_supernet

    src = tmp_path / "src"
    src.mkdir()
    (src / "supernet.safetensors").write_bytes(b"weights")
    (src / "supernet.json").write_text("{}")
    (tmp_path / "store").mkdir()
    store = get_store(str(tmp_path / "store"))
    files = upload_files(store, [src / "supernet.safetensors", src / "supernet.json"])
    from nas.files import sha256_file

    entry = {"sha256": sha256_file(src / "supernet.safetensors"), "files": files}
    got = fetch_shared_supernet(entry, store, tmp_path / "cache")
    assert (got / "supernet.safetensors").read_bytes() == b"weights"
    assert fetch_shared_supernet(entry, store, tmp_path / "cache") == got  # downloaded once, reused
    bad = {**entry, "files": [{**files[0], "sha256": "0" * 64}, files[1]]}
    with pytest.raises(StorageError, match="shared supernet supernet.safetensors .* has sha256 .*, recorded 000000000000"):
        fetch_shared_supernet(bad, store, tmp_path / "other")
    assert not (tmp_path / "other" / f"supernet-{entry['sha256']}").exists()  # nothing half-written
    wrong = {**entry, "sha256": "f" * 64}
    with pytest.raises(StorageError, match=f"have sha256 {entry['sha256']}, the study recorded {'f' * 64}"):
        fetch_shared_supernet(wrong, store, tmp_path / "third")
