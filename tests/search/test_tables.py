"""A study's latency tables: stored once per hash beside the trials, found again by hash (nas.search.tables)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from nas.errors import LatencyTableError
from nas.latency.table import load_table, table_sha256
from nas.search import attrs
from nas.search.tables import copy_dirs, store_table_copy, trial_table
from tests.search.fixtures import tiny_table


@pytest.fixture
def table(tmp_path):
    return load_table(tiny_table(tmp_path / "tiny-bert.fixture.json"))


def test_store_table_copy_is_named_by_hash_and_idempotent(tmp_path, table):
    sha = table_sha256(table)
    path = store_table_copy(table, tmp_path / "runs", "s")
    assert path == tmp_path / "runs" / "s" / "tables" / f"{sha}.json"
    assert table_sha256(load_table(path)) == sha and json.loads(path.read_text()) == table.to_dict()
    mtime = path.stat().st_mtime_ns
    assert store_table_copy(table, tmp_path / "runs", "s") == path and path.stat().st_mtime_ns == mtime  # not rewritten
    path.write_text("{broken")  # a damaged copy is replaced
    assert table_sha256(load_table(store_table_copy(table, tmp_path / "runs", "s"))) == sha
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_copy_dirs_of_a_trial_folder(tmp_path):
    assert copy_dirs(tmp_path / "runs" / "s" / "trial-00003") == (tmp_path / "runs" / "s" / "tables",)
    assert copy_dirs(None) == ()


def test_trial_table_by_hash_from_the_study_copy(tmp_path, table, monkeypatch):
    store_table_copy(table, tmp_path / "runs", "s")
    info = {"id": table.id, "path": "elsewhere/tiny-bert.fixture.json", "sha256": table_sha256(table)}
    monkeypatch.chdir(tmp_path)
    found = trial_table(info, subnet_dir=tmp_path / "runs" / "s" / "trial-00000")
    assert table_sha256(found) == info["sha256"] and Path(found.path).parent == tmp_path / "runs" / "s" / "tables"
    with pytest.raises(LatencyTableError, match=rf"no latency table has sha256 {info['sha256']}"):
        trial_table(info, subnet_dir=tmp_path / "runs" / "other" / "trial-00000")


def test_trial_without_sha256_loads_by_path_with_a_warning(table):
    with pytest.warns(UserWarning, match="records no sha256 .* loading .* by path"):
        assert trial_table({"path": table.path}).to_dict() == table.to_dict()
    with pytest.raises(LatencyTableError, match="records no latency table"):
        trial_table({})


def test_trial_attrs_pins_the_table_by_hash(tmp_path, table):
    from nas.search.worker import trial_attrs

    subnet_dir = tmp_path / "subnet"
    subnet_dir.mkdir(parents=True)
    (subnet_dir / "model.safetensors").write_bytes(b"weights")
    result = SimpleNamespace(to_dict=lambda: {"latency_ms": 1.0}, quality_after=0.5, arch={}, arch_summary="",
                             history=[])
    config = SimpleNamespace(space="tiny-bert", latency_table=table.path, to_dict=lambda: {"space": "tiny-bert"})
    a = trial_attrs(result=result, config=config, subnet_dir=subnet_dir)
    assert a[attrs.LATENCY_TABLE]["sha256"] == table_sha256(table)
    json.dumps(a)  # JSON-serialisable, as reported to the driver


def test_study_table_is_an_artifact_found_by_hash(tmp_path, table):
    """The driver stores the table once per hash as a study artifact; export fetches it from another folder."""
    import optuna
    from optuna.artifacts import get_all_artifact_meta

    from nas.search.artifacts import ensure_writable, get_store
    from nas.search.tables import STUDY_TABLES, fetch_study_table, store_study_table

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db")
    ensure_writable(str(tmp_path / "store"))
    store = get_store(str(tmp_path / "store"))
    entry = store_study_table(study, store, table)
    assert store_study_table(study, store, table) == entry  # idempotent: one artifact per hash
    assert [m.artifact_id for m in get_all_artifact_meta(study)] == [entry["artifact_id"]]
    tables = study.user_attrs[STUDY_TABLES]
    sha = table_sha256(table)
    got = fetch_study_table(tables, store, sha, tmp_path / "fetched")
    assert table_sha256(load_table(got / f"{sha}.json")) == sha
    assert fetch_study_table(tables, store, "0" * 64, tmp_path / "none") is None


def test_trial_attrs_and_trial_tables_of_a_trial_priced_per_phase(tmp_path, table):
    """A config with latency_tables: each budget's table is pinned by hash (LATENCY_TABLES) and found again."""
    from nas.search.tables import trial_tables
    from nas.search.worker import trial_attrs
    from tests.search.fixtures import TPOT_TABLE, TTFT_TABLE

    subnet_dir = tmp_path / "subnet"
    subnet_dir.mkdir(parents=True)
    (subnet_dir / "model.safetensors").write_bytes(b"weights")
    result = SimpleNamespace(to_dict=lambda: {"latency_ms": 1.0, "ttft_ms": 1.0, "tpot_ms": 0.5}, quality_after=0.5,
                             arch={}, arch_summary="", history=[])
    config = SimpleNamespace(space="tiny-llama", latency_table=TTFT_TABLE, to_dict=lambda: {},
                             latency_tables={"ttft_ms": TTFT_TABLE, "tpot_ms": TPOT_TABLE})
    a = trial_attrs(result=result, config=config, subnet_dir=subnet_dir)
    ttft, tpot = load_table(TTFT_TABLE), load_table(TPOT_TABLE)
    assert list(a[attrs.LATENCY_TABLES]) == ["ttft_ms", "tpot_ms"]
    assert a[attrs.LATENCY_TABLES]["tpot_ms"]["sha256"] == table_sha256(tpot)
    assert a[attrs.LATENCY_TABLE] == a[attrs.LATENCY_TABLES]["ttft_ms"]
    found = trial_tables(json.loads(json.dumps(a)))
    assert {b: table_sha256(t) for b, t in found.items()} == {"ttft_ms": table_sha256(ttft),
                                                              "tpot_ms": table_sha256(tpot)}
    # a single-table trial: {"latency_ms": table}; no latency_tables attribute is recorded
    one = trial_attrs(result=result, config=SimpleNamespace(space="tiny-bert", latency_table=table.path,
                                                            to_dict=lambda: {}), subnet_dir=subnet_dir)
    assert attrs.LATENCY_TABLES not in one
    assert {b: table_sha256(t) for b, t in trial_tables(one).items()} == {"latency_ms": table_sha256(table)}
    a[attrs.LATENCY_TABLES]["tpot_ms"]["sha256"] = "0" * 64
    with pytest.raises(LatencyTableError, match=r"^tpot_ms: .*no latency table has sha256 0{64}"):
        trial_tables(a)
