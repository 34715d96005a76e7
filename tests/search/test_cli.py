"""`nas search|pareto|studies` user errors: one line, exit 1, before Ray starts, no password echoed."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.search.fixtures import experiment_file
from tests.search.test_study import fill

ROOT = Path(__file__).resolve().parents[2]


def nas(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})


def one_line_error(r, *needles):
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas: error:"), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert "s3cret" not in r.stderr + r.stdout
    return lines[0]


def test_search_input_errors(tmp_path):
    exp = experiment_file(tmp_path)
    db = f"sqlite:///{tmp_path}/s.db"
    one_line_error(nas("search", str(exp), "--storage", "postgresql://bob:s3cret@127.0.0.1:1/x"),
                   "storage: cannot open", "bob:***@")
    one_line_error(nas("search", str(exp), "--storage", "mysql//bob:s3cret@host"), "is not a URL")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nspace: [\n")
    one_line_error(nas("search", str(bad), "--storage", db), f"{bad}: (yaml): malformed YAML at line")
    d = yaml.safe_load(exp.read_text())
    d["sample"]["tau0"] = {"float": [5, 1]}
    bad.write_text(yaml.safe_dump(d))
    one_line_error(nas("search", str(bad), "--storage", db), f"{bad}: sample.tau0: float: low 5 must be < high 1")
    d = yaml.safe_load(exp.read_text())
    d["space"] = "tiny-llama"
    bad.write_text(yaml.safe_dump(d))
    one_line_error(nas("search", str(bad), "--storage", db), "latency_table:", "built for space hash")
    one_line_error(nas("search", str(exp), "--storage", db, "--num-cpus", "1", "--trials", "0"), "trials: must be >= 1")
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_pareto_and_studies_errors(tmp_path):
    db = f"sqlite:///{tmp_path}/s.db"
    fill(db, "known")
    one_line_error(nas("pareto", "--study", "nope", "--storage", db), "study 'nope': no such study", "known")
    one_line_error(nas("studies", "--storage", "postgresql://bob:s3cret@127.0.0.1:1/x"), "bob:***@")
    one_line_error(nas("pareto", "--study", "known", "--storage", db, "--plot", str(tmp_path / "f.gif")),
                   "plot: f.gif: use a .png or .html")
    one_line_error(nas("search", str(experiment_file(tmp_path, name="known")), "--storage", db),
                   "study 'known': already exists; pass --resume")


def test_pareto_formats(tmp_path):
    import json

    db = f"sqlite:///{tmp_path}/s.db"
    fill(db, "known")
    table = nas("pareto", "--study", "known", "--storage", db).stdout.splitlines()
    assert table[0].split() == ["trial", "quality", "latency_ms", "size_mb", "arch"]
    assert table[2].split()[:4] == ["3", "0.5", "1", "9"] and table[2].endswith("L0 H4 F16 A8 M8 E8")
    rows = json.loads(nas("pareto", "--study", "known", "--storage", db, "-f", "json", "--plot",
                          str(tmp_path / "f.html")).stdout)
    assert [r["trial"] for r in rows] == [3, 2, 0] and rows[1]["values"] == [0.8, 2.0, 5.0]
    assert rows[1]["arch"] == "L0 H3 F16 A8 M8 E8"
    assert "<svg" in (tmp_path / "f.html").read_text()
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "optuna"), "trials", "--study-name", "known", "--storage", db,
                        "-f", "json"], capture_output=True, text=True)
    if r.returncode == 0:  # Optuna's own CLI reads the same database
        assert len(json.loads(r.stdout)) == 4
    else:
        pytest.fail(r.stderr[-500:])
