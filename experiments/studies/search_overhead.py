"""Benchmark: orchestration overhead of the search service, and concurrent PostgreSQL writers.

1. Overhead. ``nas search`` with concurrency 1 on a SQLite study runs ``--trials`` light
   trials (tests/search/trials.py: a real tiny-bert subnet, no training). Per trial, the
   orchestration overhead is the time between consecutive results reaching the driver
   minus the trial's own compute (Ray scheduling, a fresh worker process and its imports,
   Optuna ask/tell and attribute writes on the storage). Ray's start-up before the first
   trial is reported separately (paid once per ``nas search``). The share is set against
   the compute of one ``minilm_cpu`` trial (``trainers.search_once`` with the experiment's
   settings; ``--minilm-trials`` samples, on the table given with ``--table``).
   ``--upload`` adds the artifact upload of the largest subnet a ``minilm_cpu`` trial can
   produce (the full all-MiniLM-L6-v2 at fp32, as ``Subnet.save`` writes it) to a folder
   store, the part of a trial's overhead that grows with the model (median of 5).
2. Writers. ``--writers`` processes each write ``--per-writer`` complete trials (ask, the
   full attribute set of a real trial, tell) to one study at once, on PostgreSQL (and
   SQLite); the study must then hold exactly writers × per-writer distinct COMPLETE trials.

    PYTHONPATH=. .venv/bin/python experiments/studies/search_overhead.py --trials 8 --minilm-trials 1 \\
        --table latency_luts/minilm-l6.onnxruntime-cpu.t1.b1.s128.json

Writes experiments/reports/search_overhead.json (+ the .md report is written by hand from it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.studies.report_files import write_json  # noqa: E402


def med_iqr(xs):
    xs = sorted(xs)
    if len(xs) < 2:
        return {"median": xs[0] if xs else None, "iqr": 0.0, "n": len(xs)}
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return {"median": statistics.median(xs), "iqr": q[2] - q[0], "n": len(xs)}


def overhead(trials: int) -> dict:
    import nas
    from nas.search.experiment import Experiment

    tmp = Path(tempfile.mkdtemp(prefix="nas-overhead-"))
    exp = Experiment.from_dict({
        "name": "overhead", "space": "tiny-bert", "task": "wordnet-embed",
        "latency_table": "tiny-bert.onnxruntime-cpu.t1.b1.s32", "trial": "trainers.light:light",
        "trainer": {"steps": 2, "warmup_steps": 0, "finetune_steps": 0},
        "sample": {"target_fraction": {"float": [0.5, 0.9]}, "seed": {"int": [0, 100000]}},
        "run": {"trials": trials, "concurrency": 1, "cpus_per_trial": 1, "max_failures": 0},
        "sampler": {"name": "random", "seed": 0},
    }, source="overhead")
    out = nas.run_search(exp, storage=f"sqlite:///{tmp}/s.db", num_cpus=2, log=lambda s: print(s, flush=True))
    ts = sorted(out.timings, key=lambda t: t.finished_s)
    per_trial = [ts[i].finished_s - ts[i - 1].finished_s - ts[i].compute_s for i in range(1, len(ts))]
    return {
        "trials": len(ts), "ray_startup_and_first_trial_overhead_s": ts[0].finished_s - ts[0].compute_s,
        "setup_s": out.setup_s, "wall_s": out.wall_s,
        "per_trial_overhead_s": med_iqr(per_trial), "light_trial_compute_s": med_iqr([t.compute_s for t in ts]),
        "raw": out.to_dict()["timings"],
    }


def minilm_compute(n: int, table: str | None) -> dict:
    import torch

    from nas.search.experiment import Experiment
    from trainers import search_once

    exp = Experiment.from_yaml(ROOT / "experiments" / "minilm_cpu.yaml")
    if table:
        exp = dataclasses.replace(exp, latency_table=table)
    torch.set_num_threads(int(exp.run.cpus_per_trial))
    times = []
    for i in range(n):
        params = {k: p.example() for k, p in exp.sample.items()}
        t = time.perf_counter()
        search_once(exp.search_config({**params, "seed": i}), progress=None)
        times.append(time.perf_counter() - t)
        print(f"minilm_cpu trial {i}: {times[-1]:.1f} s", flush=True)
    return {"table": exp.latency_table, "compute_s": med_iqr(times), "raw_s": times}


def _writer(url: str, study: str, n: int, attrs_blob: dict, q) -> None:
    import optuna

    from nas.search.storage import retry_transient
    from nas.search.storage import get_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = get_storage(url)
    s = optuna.load_study(study_name=study, storage=st)
    lat, errors = [], 0
    for i in range(n):
        t = time.perf_counter()
        try:
            tr = retry_transient(lambda: s.ask())
            for k, v in attrs_blob.items():
                retry_transient(lambda k=k, v=v: tr.set_user_attr(k, v))
            retry_transient(lambda: s.tell(tr, [0.5 + i / 1000, 1.0 + i, 2.0]))
        except Exception as e:  # counted, and the run must report 0
            errors += 1
            print(f"writer {os.getpid()}: {type(e).__name__}: {str(e)[:200]}", flush=True)
        lat.append(time.perf_counter() - t)
    q.put({"latency_s": lat, "errors": errors})


def upload_cost(n: int = 5) -> dict:
    import nas
    from nas.search.artifacts import ensure_writable, get_store, upload_files

    space = nas.load_space("minilm-l6")
    tmp = Path(tempfile.mkdtemp(prefix="nas-upload-"))
    nas.derive(nas.Supernet.build(space), space.full()).save(tmp / "subnet")
    files = sorted((tmp / "subnet").iterdir())
    ensure_writable(str(tmp / "store"))
    store = get_store(str(tmp / "store"))
    times = []
    for _ in range(n):
        t = time.perf_counter()
        upload_files(store, files)
        times.append(time.perf_counter() - t)
    return {"bytes": sum(f.stat().st_size for f in files), "files": [f.name for f in files], "upload_s": med_iqr(times)}


def writers(url: str, n_writers: int, per: int) -> dict:
    import optuna

    from nas.search import attrs
    from nas.search.storage import get_storage, redact
    from nas.search.study import create_or_load_study

    name = f"stress-{uuid.uuid4().hex[:8]}"
    st = get_storage(url)
    create_or_load_study(st, name, objectives=attrs.OBJECTIVES, directions=attrs.DIRECTIONS)
    blob = {attrs.ARCH: {f"layer{i}.{k}": 8 for i in range(6) for k in ("keep", "heads", "ffn", "attn.bits")},
            attrs.CONFIG: {f"field{i}": i for i in range(35)}, attrs.METRICS: {f"m{i}": 0.1 * i for i in range(15)},
            attrs.HISTORY_SUMMARY: {"steps": 50, "last": {"step": 49, "tau": 1.0, "loss": 0.5}, "values": {str(i): 0.5 for i in range(50)}}, attrs.ARCH_SUMMARY: "L0 H1 F1 A8 M8 E8"}
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    t = time.perf_counter()
    procs = [ctx.Process(target=_writer, args=(url, name, per, blob, q)) for _ in range(n_writers)]
    for p in procs:
        p.start()
    res = [q.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t
    study = optuna.load_study(study_name=name, storage=st)
    complete = [tr for tr in study.trials if tr.state.name == "COMPLETE"]
    expected = n_writers * per
    out = {
        "storage": redact(url).split("://")[0], "writers": n_writers, "per_writer": per, "expected": expected,
        "complete": len(complete), "distinct_numbers": len({tr.number for tr in complete}),
        "lost": expected - len(complete), "errors": sum(r["errors"] for r in res), "wall_s": wall,
        "trial_write_s": med_iqr([x for r in res for x in r["latency_s"]]),
    }
    optuna.delete_study(study_name=name, storage=st)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--minilm-trials", type=int, default=1)
    ap.add_argument("--table", help="latency table for the minilm_cpu trials (default: the experiment's)")
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--per-writer", type=int, default=25)
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "reports" / "search_overhead.json"))
    ap.add_argument("--skip", nargs="*", default=[], choices=["overhead", "minilm", "writers", "upload"])
    ap.add_argument("--merge", action="store_true", help="add to the existing report (sections run separately)")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(a.out)
    report = json.loads(out.read_text()) if a.merge and out.is_file() else {}
    report.setdefault("runs", []).append({"sections": [s for s in ("writers", "overhead", "minilm", "upload")
                                                       if s not in a.skip],
                                          "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
                                          "cpus": os.cpu_count()})

    def save() -> None:  # after every section, so a long run that is cut off keeps what it measured
        write_json(out, report)

    if "writers" not in a.skip:
        report["writers"] = [writers(a.postgres, a.writers, a.per_writer)]
        tmp = tempfile.mkdtemp(prefix="nas-writers-")
        report["writers"].append(writers(f"sqlite:///{tmp}/w.db", a.writers, a.per_writer))
        print(json.dumps(report["writers"], indent=1), flush=True)
        save()
    if "overhead" not in a.skip:
        report["overhead"] = overhead(a.trials)
        print(json.dumps({k: v for k, v in report["overhead"].items() if k != "raw"}, indent=1), flush=True)
        save()
    if "minilm" not in a.skip:
        report["minilm"] = minilm_compute(a.minilm_trials, a.table)
        save()
    if "upload" not in a.skip:
        report["upload"] = upload_cost()
        print(json.dumps(report["upload"], indent=1), flush=True)
        save()
    if "overhead" in report and "minilm" in report:
        oh, c = report["overhead"]["per_trial_overhead_s"]["median"], report["minilm"]["compute_s"]["median"]
        report["overhead_share"] = oh / c
        report["overhead_share_with_startup_3_trials"] = (
            oh + report["overhead"]["ray_startup_and_first_trial_overhead_s"] / 3) / c
        if "upload" in report:  # the light trials upload a tiny subnet: add the largest MiniLM one's upload
            report["overhead_share_with_full_minilm_upload"] = (oh + report["upload"]["upload_s"]["median"]) / c
    report["runs"][-1]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    save()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
