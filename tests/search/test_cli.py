"""`nas search|pareto|studies` user errors: one line, exit 1, before Ray starts, no password echoed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.search.fixtures import experiment_file
from tests.search.test_study import fill

ROOT = Path(__file__).resolve().parents[2]


def nas(*args, cwd=None, umask=None):
    """`nas ...` as users run it, in a subprocess (no ``NAS_STORAGE``; ``umask`` set in the child if given)."""
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
                          preexec_fn=None if umask is None else (lambda: os.umask(umask)))


@pytest.fixture
def nas_here(capsys):
    """`nas ...` through the same entry point, in this process (cheaper than a subprocess per call)."""
    from nas.cli import main

    def run(*args):
        rc = main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, rc, out.out, out.err)

    return run


def one_line_error(r, *needles):
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas: error:"), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert "s3cret" not in r.stderr + r.stdout
    return lines[0]


def test_search_input_errors(tmp_path, nas_here):
    exp = experiment_file(tmp_path)
    db = f"sqlite:///{tmp_path}/s.db"
    one_line_error(nas("search", str(exp), "--storage", "postgresql://bob:s3cret@127.0.0.1:1/x"),
                   "storage: cannot open", "bob:***@")
    one_line_error(nas_here("search", str(exp), "--storage", "mysql//bob:s3cret@host"), "is not a URL")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nspace: [\n")
    one_line_error(nas_here("search", str(bad), "--storage", db), f"{bad}: (yaml): malformed YAML at line")
    d = yaml.safe_load(exp.read_text())
    d["sample"]["tau0"] = {"float": [5, 1]}
    bad.write_text(yaml.safe_dump(d))
    one_line_error(nas_here("search", str(bad), "--storage", db), f"{bad}: sample.tau0: float: low 5 must be < high 1")
    d = yaml.safe_load(exp.read_text())
    d["space"] = "tiny-llama"
    bad.write_text(yaml.safe_dump(d))
    one_line_error(nas_here("search", str(bad), "--storage", db), "latency_table:", "built for space hash")
    one_line_error(nas_here("search", str(exp), "--storage", db, "--num-cpus", "1", "--trials", "0"),
                   "trials: must be >= 1")
    one_line_error(nas_here("search", str(exp), "--storage", db, "--timeout", "0"),
                   "timeout: must be a positive number of seconds, got 0.0")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "s.db").exists()  # nothing ran, nothing created


def test_pareto_and_studies_errors(tmp_path, nas_here):
    db = f"sqlite:///{tmp_path}/s.db"
    fill(db, "known")
    one_line_error(nas("pareto", "--study", "nope", "--storage", db), "study 'nope': no such study", "known")
    one_line_error(nas_here("studies", "--storage", "postgresql://bob:s3cret@127.0.0.1:1/x"), "bob:***@")
    one_line_error(nas_here("pareto", "--study", "known", "--storage", db, "--plot", str(tmp_path / "f.gif")),
                   "plot: f.gif: use a .png or .html")
    one_line_error(nas_here("search", str(experiment_file(tmp_path, name="known")), "--storage", db),
                   "study 'known': already exists; pass --resume")


def test_read_only_commands_create_no_database(tmp_path, nas_here):
    """`nas studies` / `nas pareto` where there is no database: one line saying so, and no empty database left."""
    here = tmp_path.resolve()
    hint = "run a search first or point at one with --storage URL or NAS_STORAGE"
    for args in (("studies",), ("pareto", "--study", "x")):
        one_line_error(nas(*args, cwd=here), f"storage: no study database at {here / 'nas_studies.db'}; {hint}")
    one_line_error(nas_here("pareto", "--study", "x", "--storage", f"sqlite:///{here}/other.db"),
                   f"storage: no study database at {here / 'other.db'};")
    assert list(here.iterdir()) == []


def test_pareto_plot_is_world_readable_and_says_where(tmp_path):
    here = tmp_path.resolve()
    fill(f"sqlite:///{here}/s.db", "known")
    r = nas("pareto", "--study", "known", "--storage", f"sqlite:///{here}/s.db", "--plot", "f.png", cwd=here,
            umask=0o022)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0] == f"wrote plot to {here / 'f.png'}" and len(lines) == 2
    assert lines[1].startswith("proxy: Kendall tau")  # inherited-weights vs fine-tuned quality
    assert (here / "f.png").read_bytes()[:4] == b"\x89PNG" and (here / "f.png").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in here.iterdir()) == ["f.png", "s.db"]  # no temporary file left


def test_pareto_formats(tmp_path, nas_here):
    import json

    db = f"sqlite:///{tmp_path}/s.db"
    fill(db, "known")
    table = nas("pareto", "--study", "known", "--storage", db).stdout.splitlines()
    assert table[0].split() == ["trial", "quality", "latency_ms", "size_mb", "arch"]
    assert table[2].split()[:4] == ["3", "0.5", "1", "9"] and table[2].endswith("L0 H4 F16 A8 M8 E8")
    rows = json.loads(nas_here("pareto", "--study", "known", "--storage", db, "-f", "json", "--plot",
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


def test_pareto_of_a_study_priced_per_phase(tmp_path, nas_here):
    """A two-latency study (trials written with Optuna directly): one column per latency, --max per latency."""
    import json

    from tests.search.test_study import fill_phases

    db = f"sqlite:///{tmp_path}/s.db"
    fill_phases(db, "ph")
    table = nas("pareto", "--study", "ph", "--storage", db).stdout.splitlines()
    assert table[0].split() == ["trial", "quality", "ttft_ms", "tpot_ms", "size_mb", "arch"]
    assert [line.split()[:5] for line in table[2:]] == [["1", "0.8", "30", "16", "8"], ["2", "0.7", "45", "9", "7"],
                                                        ["0", "0.9", "50", "20", "10"]]
    r = nas_here("pareto", "--study", "ph", "--storage", db, "--max", "ttft_ms=46", "--max", "tpot_ms=10")
    assert r.returncode == 0 and [line.split()[0] for line in r.stdout.splitlines()[2:]] == ["2"]
    rows = json.loads(nas_here("pareto", "--study", "ph", "--storage", db, "--max", "ttft_ms=46", "-f", "json").stdout)
    assert [(r["trial"], r["ttft_ms"], r["tpot_ms"]) for r in rows] == [(1, 30.0, 16.0), (2, 45.0, 9.0)]
    assert rows[0]["latencies"] == {"latency_ms": 30.0, "ttft_ms": 30.0, "tpot_ms": 16.0}
    csv = nas_here("pareto", "--study", "ph", "--storage", db, "-f", "csv", "--max", "size_mb=7.5").stdout
    assert csv.splitlines() == ["trial,quality,ttft_ms,tpot_ms,size_mb,arch", "2,0.7,45,9,7,L2 H3"]
    r = nas_here("pareto", "--study", "ph", "--storage", db, "--plot", str(tmp_path / "f.html"))
    html = (tmp_path / "f.html").read_text()
    assert r.returncode == 0 and "<th>ttft_ms</th><th>tpot_ms</th>" in html and "predicted ttft_ms (ms)" in html


def test_pareto_max_errors(tmp_path, nas_here):
    from tests.search.test_study import fill_phases

    db = f"sqlite:///{tmp_path}/s.db"
    fill_phases(db, "ph")
    fill(db, "known")
    for bad in ("ttft_ms", "ttft_ms=", "=4", "ttft_ms=fast", "ttft_ms=nan"):
        one_line_error(nas_here("pareto", "--study", "ph", "--storage", db, "--max", bad),
                       f"max: {bad!r} is not NAME=VALUE (e.g. --max ttft_ms=40 --max tpot_ms=15)")
    one_line_error(nas("pareto", "--study", "ph", "--storage", db, "--max", "ttft_ms=1", "--max", "ttft_ms=2"),
                   "max: ttft_ms given twice")
    one_line_error(nas_here("pareto", "--study", "ph", "--storage", db, "--max", "e2e_ms=1"),
                   "max: 'e2e_ms' is not a latency objective of this study nor size_mb; known: latency_ms, ttft_ms, "
                   "tpot_ms, size_mb")
    one_line_error(nas_here("pareto", "--study", "ph", "--storage", db, "--max", "ttft_ms=10", "--max", "tpot_ms=5"),
                   "max: no trial fits ttft_ms <= 10, tpot_ms <= 5 (fastest in ttft_ms is trial 1 at 30 ms; "
                   "fastest in tpot_ms is trial 2 at 9 ms)")
    one_line_error(nas_here("pareto", "--study", "ph", "--storage", db, "--max-latency", "40"),
                   "max_latency_ms: the study has 2 latencies (ttft_ms, tpot_ms); bound each: --max ttft_ms=MS "
                   "--max tpot_ms=MS")
    one_line_error(nas_here("pareto", "--study", "known", "--storage", db, "--max-latency", "40", "--max",
                            "latency_ms=3"), "choose one of max_latency_ms and max_values")
    r = nas_here("pareto", "--study", "known", "--storage", db, "--max-latency", "2")
    assert r.returncode == 0 and [line.split()[0] for line in r.stdout.splitlines()[2:]] == ["3", "2"]
    one_line_error(nas_here("export", "--study", "ph", "--storage", db, "--out", str(tmp_path / "o"), "--max", "x"),
                   "max: 'x' is not NAME=VALUE")


def test_proxy_line_ranks_quality_before_against_after():
    from nas.commands.search import proxy_line
    from nas.search.pareto import Point

    def pt(n, before, after):
        return Point(trial=n, values=(after,), quality=after, latency_ms=1.0, size_mb=1.0,
                     attrs={"metrics": {"quality_before": before, "quality_after": after}})

    # before ranks 1,2,3,4; after swaps the last two: (5 concordant - 1 discordant) / 6 pairs
    points = [pt(0, 0.1, 0.5), pt(1, 0.2, 0.6), pt(2, 0.3, 0.8), pt(3, 0.4, 0.7)]
    assert proxy_line(points) == ("proxy: Kendall tau between quality before fine-tuning (inherited weights) and "
                                  "after: 0.667 over 4 complete trials")
    assert proxy_line(points[:2]).endswith("needs >= 3 complete trials (have 2)")


def test_proxy_line_adds_the_same_budget_tau_when_trials_sample_their_fine_tuning():
    from nas.commands.search import proxy_line
    from nas.search.pareto import Point

    def pt(n, before, after, steps):
        return Point(trial=n, values=(after,), quality=after, latency_ms=1.0, size_mb=1.0,
                     attrs={"metrics": {"quality_before": before, "quality_after": after},
                            "config": {"finetune_steps": steps}})

    # within each budget half the proxy ranks perfectly; the long-fine-tuned subnets all score higher
    points = [pt(0, 0.1, 0.50, 20), pt(1, 0.2, 0.51, 20), pt(2, 0.05, 0.60, 150), pt(3, 0.15, 0.61, 150)]
    assert proxy_line(points) == ("proxy: Kendall tau between quality before fine-tuning (inherited weights) and "
                                  "after: 0.000 over 4 complete trials; 1.000 within fine-tuning-budget halves "
                                  "(<= / > 85 steps)")
