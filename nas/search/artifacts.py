"""Trial and study files in Optuna's artifact store: reachable from every node that reaches the study.

A trial's derived subnet (``model.safetensors``, ``subnet.json``, ``head.safetensors``) and
its step history, and a study's shared files (the latency table it searched with) live in an
Optuna artifact store, never under a node's own working directory. The store is named by a URL:

* a folder path or ``file:///abs/path`` – :class:`optuna.artifacts.FileSystemArtifactStore`
  (one machine, or a filesystem every node mounts at the same path);
* ``s3://bucket[/prefix]`` – :class:`optuna.artifacts.Boto3ArtifactStore` (S3-compatible object
  storage; ``pip install 'nas-compress[s3]'``). Endpoint and credentials come from boto3's
  usual environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), never from the URL.

Default (:func:`default_store_url`): ``<db>.artifacts/`` beside a SQLite study file, else
``./nas_artifacts``. The study records its store's URL (study user attribute
``artifact_store``) so export finds it again; ``--artifacts`` overrides it.

The trial process never touches the study: it writes each file through the store
(:func:`upload_files`) and reports the entries (artifact id, file name, sha256); the driver
records them on the trial exactly as :func:`optuna.artifacts.upload_artifact` does
(:func:`record_artifacts`: system attribute ``artifacts:<id>``), so optuna-dashboard lists a
trial's files. :func:`download_files` fetches entries into a folder and checks every sha256.
"""

from __future__ import annotations

import json
import mimetypes
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nas.errors import MissingDependencyError, StorageError
from nas.files import atomic_file, sha256_file

ENV = "NAS_ARTIFACTS"
STUDY_ATTR = "artifact_store"
ARTIFACTS_ATTR_PREFIX = "artifacts:"  # optuna.artifacts._upload.ARTIFACTS_ATTR_PREFIX


def default_store_url(storage_url: str | None) -> str:
    """``$NAS_ARTIFACTS``, else ``<db>.artifacts`` beside a SQLite file, else ``./nas_artifacts`` (absolute)."""
    env = os.environ.get(ENV)
    if env:
        return env
    if storage_url and storage_url.startswith("sqlite:///") and storage_url != "sqlite:///:memory:":
        db = Path(storage_url[len("sqlite:///"):]).resolve()
        return str(db.with_name(db.name + ".artifacts"))
    return str(Path("nas_artifacts").resolve())


def get_store(url: str):
    """The Optuna artifact store a URL names (see the module docstring).

    Raises:
        StorageError: a malformed URL or an unknown scheme (one line, the URL shown without credentials).
        MissingDependencyError: ``s3://`` without boto3.
    """
    if not isinstance(url, str) or not url.strip():
        raise StorageError("artifacts: expected a folder path, file:///path or s3://bucket[/prefix]")
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket or "@" in bucket or ":" in bucket:
            raise StorageError("artifacts: s3 URLs look like s3://bucket[/prefix] (credentials come from the "
                               "environment, never the URL)")
        try:
            import boto3
        except ImportError:
            raise MissingDependencyError("artifacts: s3:// needs boto3: pip install 'nas-compress[s3]'") from None
        from optuna.artifacts import Boto3ArtifactStore

        store = Boto3ArtifactStore(bucket, boto3.client("s3"))
        return _Prefixed(store, prefix.strip("/")) if prefix.strip("/") else store
    if "://" in url and not url.startswith("file://"):
        scheme = url.split("://", 1)[0]
        raise StorageError(f"artifacts: unknown scheme {scheme!r}; use a folder path, file:///path or s3://bucket")
    path = Path(url[len("file://"):] if url.startswith("file://") else url).expanduser()
    if path.exists() and not path.is_dir():
        raise StorageError(f"artifacts: {path} is not a folder")
    from optuna.artifacts import FileSystemArtifactStore

    return FileSystemArtifactStore(path)


def ensure_writable(url: str) -> None:
    """Create a folder store (a plain mkdir: the store's files get the user's permissions)."""
    if url.startswith("s3://"):
        return
    path = Path(url[len("file://"):] if url.startswith("file://") else url).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"artifacts: cannot create {path}: {e.strerror or e}") from None


class _Prefixed:
    """An artifact store whose ids live under ``prefix/`` (``s3://bucket/prefix``)."""

    def __init__(self, store: Any, prefix: str) -> None:
        self.store, self.prefix = store, prefix

    def open_reader(self, artifact_id: str):
        return self.store.open_reader(f"{self.prefix}/{artifact_id}")

    def write(self, artifact_id: str, content_body) -> None:
        self.store.write(f"{self.prefix}/{artifact_id}", content_body)

    def remove(self, artifact_id: str) -> None:
        self.store.remove(f"{self.prefix}/{artifact_id}")


def upload_files(store: Any, paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Write each file into the store under a new id; one entry per file.

    Returns:
        ``[{"artifact_id", "filename", "mimetype", "encoding", "sha256", "bytes"}, ...]``.

    Raises:
        OSError and the store's own errors: an unreachable store (the trial fails and is retried).
    """
    entries = []
    for p in map(Path, paths):
        artifact_id = str(uuid.uuid4())
        mimetype, encoding = mimetypes.guess_type(p.name)
        with open(p, "rb") as f:
            store.write(artifact_id, f)
        entries.append({"artifact_id": artifact_id, "filename": p.name,
                        "mimetype": mimetype or "application/octet-stream", "encoding": encoding,
                        "sha256": sha256_file(p), "bytes": p.stat().st_size})
    return entries


def record_artifacts(storage: Any, entries: Sequence[Mapping[str, Any]], *, trial_id: int | None = None,
                     study_id: int | None = None) -> None:
    """Link entries to a trial (or a study) as :func:`optuna.artifacts.upload_artifact` does."""
    for e in entries:
        meta = json.dumps({k: e[k] for k in ("artifact_id", "filename", "mimetype", "encoding")})
        key = ARTIFACTS_ATTR_PREFIX + e["artifact_id"]
        if trial_id is not None:
            storage.set_trial_system_attr(trial_id, key, meta)
        else:
            storage.set_study_system_attr(study_id, key, meta)


def download_files(store: Any, entries: Sequence[Mapping[str, Any]], dest: str | Path, *, what: str = "artifact"
                   ) -> Path:
    """Fetch every entry into ``dest`` under its file name and check its recorded sha256.

    Raises:
        StorageError: the store cannot be read, an artifact is missing, or a file's sha256 differs
            from the recorded one (the message names the file, the artifact id and both hashes).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for e in entries:
        target = dest / e["filename"]
        try:
            with atomic_file(target) as tmp, store.open_reader(e["artifact_id"]) as reader, open(tmp, "wb") as out:
                for block in iter(lambda: reader.read(1 << 20), b""):
                    out.write(block)
        except Exception as err:  # the store's own errors (ArtifactNotFound, boto3, OSError)
            raise StorageError(f"artifacts: {what} {e['filename']} (artifact {e['artifact_id']}) cannot be read: "
                               f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
        got = sha256_file(target)
        if got != e.get("sha256"):
            target.unlink(missing_ok=True)
            raise StorageError(f"artifacts: {what} {e['filename']} (artifact {e['artifact_id']}) has sha256 "
                               f"{got[:12]}…, recorded {str(e.get('sha256'))[:12]}…: corrupt or replaced")
    return dest
