"""Before any method runs: is the latency table still true on this machine? Recalibrate it if not.

A table measured hours earlier on a shared machine can be 10–20 % off by the time the
benchmark runs (``nas lut drift``). Every method searches with the same table, so the
drift does not favour one of them, but it shows up as a uniform bias in the table's
fidelity. With ``recalibrate: if_drifted`` the benchmark does what the CLI tells a user
to do: re-measure the table's calibration models and, beyond ±5 %, refit its
calibration (:func:`nas.latency.drift.recalibrated`: entries unchanged) and search with
that table, written into the work folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def prepare_table(table_path: str, mode: str, work: Path, say: Callable[[str], None]) -> tuple[str, dict[str, Any]]:
    """``(table every method searches with, what was checked)`` for ``mode`` in ``if_drifted|always|never``."""
    if mode == "never":
        return table_path, {"mode": mode, "checked": False, "recalibrated": False}
    from nas.latency.drift import check_drift, recalibrated
    from nas.latency.table import load_table

    table = load_table(table_path)
    say(f"drift check: re-measuring the {len((table.calibration or {}).get('models') or [])} calibration models "
        f"of {table.id}")
    report = check_drift(table)
    info = {"mode": mode, "checked": True, "median_ratio": report["median_ratio"], "q1": report["q1"],
            "q3": report["q3"], "drifted": report["drifted"], "tolerance": report["tolerance"],
            "clock": report["clock"], "models": report["models"], "measured": report["measured"],
            "recalibrated": False}
    say(f"drift check: now/then median {report['median_ratio']:.3f} (IQR {report['q1']:.3f}–{report['q3']:.3f}); "
        + ("drifted" if report["drifted"] else "within tolerance"))
    if mode == "always" or report["drifted"]:
        new = recalibrated(table, report)
        out = work / f"{Path(table.path or 'table').stem}.recalibrated.json"
        new.save(out)
        info.update(recalibrated=True, path=str(out), fit_mape=new.calibration["fit_mape"],
                    calibration={k: v for k, v in new.calibration.items() if k not in ("models", "recalibrated")})
        say(f"drift check: searching with the recalibrated table {out} (fit MAPE {new.calibration['fit_mape']:.1%})")
        return str(out), info
    return table_path, info


def recheck_table(table_path: str, say: Callable[[str], None]) -> dict[str, Any]:
    """After the measurements: the searched table's calibration models re-measured again.

    Against the check before the run, this tells a host that drifted *during* the
    run (a uniform offset in the fidelity) from a table that misses some
    architectures (an error that no re-anchoring removes).
    """
    from nas.latency.drift import check_drift
    from nas.latency.table import load_table

    report = check_drift(load_table(table_path))
    say(f"drift check after the measurements: now/then median {report['median_ratio']:.3f} "
        f"(IQR {report['q1']:.3f}–{report['q3']:.3f})")
    return {k: report[k] for k in ("median_ratio", "q1", "q3", "drifted", "measured")}


def searched_table(doc: dict[str, Any], work: Path) -> str:
    """The table a finished run (its JSON ``doc``) searched with: its file if still there, else rebuilt into ``work``.

    The candidates are the recorded file or, when it is gone, every installed table with the run's
    table id (a shipped name resolves per host, and the run's host need not be this one), refitted
    on the run's recorded drift check when the run recalibrated (:func:`nas.latency.drift.recalibrated`
    is pure). The one whose predictions reproduce the run's recorded prediction of every in-space
    point is the run's table.

    Raises:
        ConfigError: no candidate reproduces the run's predictions (e.g. a ``--quick`` table, which lives
            only in the run's work folder).
    """
    from nas.errors import ConfigError
    from nas.latency.drift import recalibrated
    from nas.latency.predictor import Predictor
    from nas.latency.table import installed_tables, load_table
    from nas.spaces import load_space

    info, drift = doc["latency_table"], doc["latency_table"].get("drift") or {}
    space = load_space(doc["config"]["space"])
    points = [p for p in doc["points"] if p.get("predicted_ms") is not None]

    def reproduces(table: Any) -> bool:
        pred = Predictor(table, space)
        return all(abs(float(pred.latency_ms(p["arch"])) - p["predicted_ms"]) <= 1e-6 * p["predicted_ms"]
                   for p in points)

    if Path(info["path"]).is_file():
        if reproduces(load_table(info["path"])):
            return str(info["path"])
        raise ConfigError(f"the run's latency table {info['path']} no longer predicts what the run recorded")
    for table in (t for t in installed_tables() if t.id == info["id"]):
        if drift.get("recalibrated"):
            table = recalibrated(table, {"measured": doc.get("started"), **drift})
        if reproduces(table):
            name = Path(info["path"]).name
            out = work / (name if name.endswith(".json") else f"{name}.json")
            table.save(out)
            return str(out)
    raise ConfigError(f"the run's latency table {info['path']} is gone and no installed {info['id']} table "
                      "reproduces its predictions (a --quick table: pass the run's --work)")
