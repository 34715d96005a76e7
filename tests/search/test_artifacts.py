"""The artifact store: URLs, upload and download with sha256 checks, and what Optuna's tools see."""

import importlib.util
import json

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta

from nas.errors import MissingDependencyError, StorageError
from nas.search.artifacts import (default_store_url, download_files, ensure_writable, get_store, record_artifacts,
                                  upload_files)


def test_default_store_sits_beside_the_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.delenv("NAS_ARTIFACTS", raising=False)
    assert default_store_url(f"sqlite:///{tmp_path}/s.db") == str(tmp_path / "s.db.artifacts")
    monkeypatch.chdir(tmp_path)
    assert default_store_url("postgresql://u@h/db") == str(tmp_path / "nas_artifacts")
    monkeypatch.setenv("NAS_ARTIFACTS", "s3://bucket/p")
    assert default_store_url(f"sqlite:///{tmp_path}/s.db") == "s3://bucket/p"


@pytest.mark.parametrize("url, words", [
    ("ftp://host/x", "unknown scheme 'ftp'"),
    ("s3://user:s3cret@bucket/x", "credentials come from the environment"),
    ("", "expected a folder path"),
])
def test_bad_urls_are_one_typed_line_without_credentials(url, words):
    with pytest.raises(StorageError) as e:
        get_store(url)
    assert words in str(e.value) and "s3cret" not in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(importlib.util.find_spec("boto3") is not None, reason="boto3 is installed")
def test_s3_without_boto3_names_the_extra():
    with pytest.raises(MissingDependencyError, match=r"nas-compress\[s3\]"):
        get_store("s3://bucket/prefix")


def test_a_file_where_the_store_should_be(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(StorageError, match="is not a folder"):
        get_store(str(tmp_path / "f"))


def test_upload_record_download_round_trip(tmp_path):
    url = f"file://{tmp_path / 'store'}"
    ensure_writable(url)
    store = get_store(url)
    files = []
    for name, data in (("model.safetensors", b"weights"), ("subnet.json", b"{}")):
        (tmp_path / name).write_bytes(data)
        files.append(tmp_path / name)
    entries = upload_files(store, files)
    assert [e["filename"] for e in entries] == ["model.safetensors", "subnet.json"]
    assert entries[1]["mimetype"] == "application/json" and entries[0]["bytes"] == 7

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db")
    trial = study.ask()
    record_artifacts(study._storage, entries, trial_id=trial._trial_id)
    metas = get_all_artifact_meta(study.trials[0], storage=study._storage)  # as optuna-dashboard lists them
    assert {m.artifact_id: m.filename for m in metas} == {e["artifact_id"]: e["filename"] for e in entries}
    json.dumps(entries)  # what a trial reports

    got = download_files(store, entries, tmp_path / "down")
    assert (got / "model.safetensors").read_bytes() == b"weights" and (got / "subnet.json").read_text() == "{}"


def test_altered_or_missing_artifacts_are_refused(tmp_path):
    ensure_writable(str(tmp_path / "store"))
    store = get_store(str(tmp_path / "store"))
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (entry,) = upload_files(store, [tmp_path / "model.safetensors"])
    (tmp_path / "store" / entry["artifact_id"]).write_bytes(b"other weights")  # replaced behind our back
    with pytest.raises(StorageError) as e:
        download_files(store, [entry], tmp_path / "down")
    assert entry["artifact_id"] in str(e.value) and entry["sha256"][:12] in str(e.value)
    assert not (tmp_path / "down" / "model.safetensors").exists()  # nothing half-trusted left behind
    (tmp_path / "store" / entry["artifact_id"]).unlink()
    with pytest.raises(StorageError, match="cannot be read"):
        download_files(store, [entry], tmp_path / "down")
