"""Export scores a trial with the very latency table its search used, found by the recorded sha256
(never by a path another working directory resolves elsewhere), and refuses a subnet of another space."""

from __future__ import annotations

import dataclasses
import io

import pytest

from nas.errors import LatencyTableError, SpaceError
from nas.export import export_trial
from nas.latency.table import table_sha256
from nas.search import attrs as A
from tests.export.conftest import LATENCY, SMALL, make_study

RELATIVE = "latency_luts/tiny-bert.table.json"  # recorded as a shipped table's path is: relative to some folder


def _relative_path(a):
    a[A.LATENCY_TABLE]["path"] = RELATIVE


def _doubled(table):
    """The same table name and space, every entry twice as slow: another table."""
    return dataclasses.replace(table, entries={k: {**v, "median_ms": 2 * v["median_ms"]} for k, v in table.entries.items()})


@pytest.fixture
def relative_study(tmp_path, monkeypatch):
    """One trial whose recorded path is relative, the original table file gone (only the study's copy holds it),
    and a working directory whose ``latency_luts/`` holds another table of the same name."""
    study = make_study(tmp_path / "st", "st", {"small": SMALL}, extra_states=False, edit_attrs=_relative_path)
    (study.root / "tiny-bert.table.json").unlink()
    elsewhere = tmp_path / "elsewhere"
    _doubled(study.table).save(elsewhere / RELATIVE)
    monkeypatch.chdir(elsewhere)
    return study


def _recorded(study):
    from nas.search.storage import get_storage
    from nas.search.study import load_study

    return load_study(get_storage(study.url), study.name).trials[0].user_attrs[A.LATENCY_TABLE]


def test_export_from_another_working_directory_uses_the_recorded_table(relative_study, tmp_path):
    recorded = _recorded(relative_study)
    assert recorded["sha256"] == table_sha256(relative_study.table) and recorded["path"] == RELATIVE
    m = export_trial(study="st", storage=relative_study.url, trial=0, out=tmp_path / "out")
    lt = m["latency_table"]
    assert lt["sha256"] == recorded["sha256"] and lt["resolved_by"] == "sha256"
    assert lt["resolved_path"] == str(relative_study.root / "st" / "tables" / f"{recorded['sha256']}.json")
    # the recorded table's hand-computed prediction, not the doubled table in this working directory
    assert m["checks"]["latency"]["predicted_ms"] == pytest.approx(LATENCY["small"])


def test_no_table_with_the_recorded_hash_names_both_hashes(relative_study, tmp_path):
    recorded = _recorded(relative_study)
    for copy in (relative_study.root / "st" / "tables").iterdir():
        copy.unlink()
    found_here = table_sha256(_doubled(relative_study.table))
    with pytest.raises(LatencyTableError) as e:
        export_trial(study="st", storage=relative_study.url, trial=0, out=tmp_path / "out")
    msg = str(e.value)
    assert msg.startswith(f"trial 0: latency_table.sha256: no latency table has sha256 {recorded['sha256']}")
    assert f"recorded path {RELATIVE!r} resolves to {RELATIVE} with sha256 {found_here} (a different table)" in msg
    assert f"{relative_study.root / 'st' / 'tables'} (0 file(s))" in msg
    assert not (tmp_path / "out").exists()


def test_trial_recorded_without_sha256_loads_by_path_with_a_warning(tmp_path):
    from nas.export.export import _resolved_by
    from nas.export.latency import trial_tables
    from nas.export.select import choose_trial

    study = make_study(tmp_path / "old", "old", {"small": SMALL}, extra_states=False, pin_table=False)
    ref = choose_trial(study="old", storage=study.url, trial=0)
    assert "sha256" not in ref.attrs[A.LATENCY_TABLE]
    log = io.StringIO()
    with pytest.warns(UserWarning, match="records no sha256"):
        table = trial_tables(ref, log)["latency_ms"]
    assert "warning: trial 0 records no latency-table sha256" in log.getvalue()
    info = _resolved_by(table, ref.attrs[A.LATENCY_TABLE])
    assert info["sha256"] == table_sha256(study.table) and info["resolved_by"].startswith("path")


def test_subnet_of_another_space_is_refused_naming_both_hashes(tmp_path):
    def other_space(a):
        a[A.SPACE] = {**a[A.SPACE], "hash": "0123456789abcdef"}

    study = make_study(tmp_path / "sp", "sp", {"small": SMALL}, extra_states=False, edit_attrs=other_space)
    import nas

    real = nas.load_space("tiny-bert").hash
    with pytest.raises(SpaceError, match=rf"space: the subnet in .* was derived from space 'tiny-bert' with hash "
                                         rf"{real}, trial 0 recorded space 'tiny-bert' with hash 0123456789abcdef"):
        export_trial(study="sp", storage=study.url, trial=0, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
