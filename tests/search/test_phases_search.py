"""`nas search` of a decoder priced per phase, end to end: the tiny Llama, TTFT and TPOT tables, 2 trials.

As users run it (a subprocess, a local Ray, a temporary SQLite file), with the real trainer on a
hand-made WordNet: the study's objectives are quality, ttft_ms, tpot_ms, size_mb; every trial
records both tables (pinned by hash, each stored with the study); ``nas pareto`` shows both
latencies and ``--max`` bounds each.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.latency.table import load_table, table_sha256
from nas.search import attrs
from nas.search.tables import STUDY_TABLES, trial_tables
from tests.search.fixtures import TPOT_TABLE, TTFT_TABLE, phases_experiment_file
from tests.tasks.fixtures import write_definitions

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_search_of_a_decoder_priced_per_phase(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "NAS_WORDNET_DIR": str(write_definitions(tmp_path / "wordnet", extra=30)),
           "NAS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NAS_STORAGE", None)
    exp = phases_experiment_file(tmp_path)
    url = f"sqlite:///{tmp_path}/s.db"

    def nas(*args, timeout=600):
        return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=timeout)

    r = nas("search", str(exp), "--storage", url, "--trials", "2", "--num-cpus", "2", "-f", "json")
    assert r.returncode == 0, r.stderr[-3000:]
    assert any(line.startswith("trial 0: complete: quality ") and ", ttft_ms " in line and ", tpot_ms " in line
               for line in r.stderr.splitlines()), r.stderr[-2000:]
    front = json.loads(r.stdout)
    assert front and all({"ttft_ms", "tpot_ms"} <= set(row) for row in front)

    study = optuna.load_study(study_name="phases", storage=url)
    assert study.metric_names == ["quality", "ttft_ms", "tpot_ms", "size_mb"]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    want = {"ttft_ms": table_sha256(load_table(TTFT_TABLE)), "tpot_ms": table_sha256(load_table(TPOT_TABLE))}
    assert set(study.user_attrs[STUDY_TABLES]) == set(want.values())  # both tables stored with the study
    for t in study.trials:
        ua = t.user_attrs
        m = ua[attrs.METRICS]
        assert list(t.values) == pytest.approx([m["quality"], m["ttft_ms"], m["tpot_ms"], m["size_mb"]])
        assert {b: e["sha256"] for b, e in ua[attrs.LATENCY_TABLES].items()} == want
        assert ua[attrs.LATENCY_TABLE]["sha256"] == want["ttft_ms"]  # the config's latency_table: the ttft one
        assert {b: table_sha256(tb) for b, tb in trial_tables(ua).items()} == want
        fr = {b: t.params[f"target_fractions.{b}"] for b in ("ttft_ms", "tpot_ms")}
        assert dict(ua[attrs.CONFIG]["target_fractions"]) == pytest.approx(fr)
        assert set(m["targets"]) >= {"ttft_ms", "tpot_ms"}
    # the two stratified budgets took the first two Halton points (bases 2 and 3), not the diagonal
    from nas.search.experiment import Experiment

    e = Experiment.from_yaml(exp)
    for t in study.trials:
        assert {k: t.params[k] for k in e.stratified_values(0)} == pytest.approx(e.stratified_values(t.number))

    table = nas("pareto", "--study", "phases", "--storage", url).stdout.splitlines()
    assert table[0].split() == ["trial", "quality", "ttft_ms", "tpot_ms", "size_mb", "arch"]
    slowest = max(max(row["ttft_ms"] for row in front), 1e-9), max(max(row["tpot_ms"] for row in front), 1e-9)
    r = nas("pareto", "--study", "phases", "--storage", url, "--max", f"ttft_ms={slowest[0]}", "--max",
            f"tpot_ms={slowest[1]}", "-f", "json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == len(front), r.stderr

    # export by both bounds: every phase re-measured with its own table, beside its prediction
    best = max(front, key=lambda row: row["quality"])
    out = tmp_path / "exported"
    r = nas("export", "--study", "phases", "--storage", url, "--max", f"ttft_ms={best['ttft_ms']}", "--max",
            f"tpot_ms={slowest[1]}", "--out", str(out), "--metric-tolerance", "100")
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rule"] == {"max_values": {"ttft_ms": best["ttft_ms"], "tpot_ms": slowest[1]}}
    chosen = next(t for t in study.trials if t.number == manifest["trial"])
    assert {c for c in manifest["checks"] if c.startswith("latency")} == {"latency.ttft_ms", "latency.tpot_ms"}
    lat = manifest["latency"]
    assert lat["ttft_ms"]["phase"] == "prefill" and lat["tpot_ms"]["phase"] == "decode"
    assert lat["tpot_ms"]["context"] == load_table(TPOT_TABLE).context
    for b in ("ttft_ms", "tpot_ms"):
        assert lat[b]["predicted_ms"] == pytest.approx(chosen.user_attrs[attrs.METRICS][b])
        assert lat[b]["measured_ms"] > 0
        assert manifest["latency_tables"][b]["sha256"] == want[b]
        assert manifest["objectives"][b] == pytest.approx(chosen.user_attrs[attrs.METRICS][b])
    g = nas("generate", str(out), "--ids", "5,6,7", "--max-new-tokens", "3")
    assert g.returncode == 0 and "at export, tpot_ms (1 token after" in g.stdout, g.stdout + g.stderr
