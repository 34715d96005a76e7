"""A real two-node Ray cluster on this machine: trials on both nodes, artifacts every node reaches, export elsewhere.

``ray.cluster_utils.Cluster`` starts a head and a worker node (separate raylets, one CPU each);
``nas search --address`` joins it as users do, against PostgreSQL, with the artifact store in a
folder both nodes reach. Afterwards the run's local folders are deleted and the best trial is
exported from two other working directories: both exports are byte-identical (manifest aside).
"""

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.search.conftest import PG_URL, require_postgres
from tests.search.fixtures import experiment_file

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    c.shutdown()


def nas(*args, cwd, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_two_node_search_and_export_from_elsewhere(cluster, tmp_path):
    require_postgres()
    study = f"cluster-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NAS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NAS_STORAGE", None)
    store = tmp_path / "shared-artifacts"
    driver_dir = tmp_path / "driver"
    driver_dir.mkdir()
    exp = experiment_file(tmp_path, run={"trials": 4, "concurrency": 2, "cpus_per_trial": 1, "max_failures": 1})
    st = PG_URL.replace("postgresql://", "postgresql+psycopg2://")
    try:
        r = nas("search", str(exp), "--address", cluster.address, "--storage", PG_URL, "--study", study,
                "--artifacts", str(store), "--runs-dir", str(driver_dir / "runs"), cwd=driver_dir, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        trials = optuna.load_study(study_name=study, storage=st).trials
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 4  # 0 lost, 0 duplicated
        nodes = {t.user_attrs["node"]["node_id"] for t in trials}
        assert nodes == {n.node_id for n in cluster.list_all_nodes()}, nodes  # trials ran on both nodes

        shutil.rmtree(driver_dir)  # whatever a node kept locally is gone; the artifact store remains
        exports = []
        for where in ("third", "fourth"):
            cwd = tmp_path / where
            cwd.mkdir()
            r = nas("export", "--study", study, "--storage", PG_URL, "--best-quality", "--out", "exported",
                    "--no-latency", cwd=cwd, env=env)
            assert r.returncode == 0, r.stderr[-3000:]
            exports.append(cwd / "exported")
        files = sorted(p.relative_to(exports[0]) for p in exports[0].rglob("*") if p.is_file())
        assert Path("model.safetensors") in files and Path("model.quant.onnx") in files
        for rel in files:
            if rel.name != "manifest.json":
                assert (exports[0] / rel).read_bytes() == (exports[1] / rel).read_bytes(), rel
    finally:
        if study in optuna.study.get_all_study_names(storage=st):
            optuna.delete_study(study_name=study, storage=st)
