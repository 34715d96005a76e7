"""Storage URLs: resolution, environment fallback, redaction, typed errors."""

import pytest

from nas.errors import StorageError
from nas.search.storage import get_storage, redact, resolve_url


def test_default_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv("NAS_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_url(None) == f"sqlite:///{tmp_path}/nas_studies.db"
    monkeypatch.setenv("NAS_STORAGE", f"sqlite:///{tmp_path}/env.db")
    assert resolve_url(None).endswith("/env.db")
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"


def test_redact():
    assert redact("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redact("postgresql://bob@db/x") == "postgresql://bob@db/x"
    assert redact("bad mysql//bob:p:w@host") == "bad mysql//bob:***@host"


@pytest.mark.parametrize("url, msg", [
    ("not a url", "is not a URL"),
    ("http://bob:s3cret@host/db", "unknown scheme 'http'"),
    ("sqlite:///no/such/folder/x.db", "does not exist"),
    ("postgresql://bob:s3cret@127.0.0.1:1/db", "cannot open postgresql+psycopg2://bob:***@127.0.0.1:1/db"),
])
def test_bad_storage(url, msg):
    with pytest.raises(StorageError) as e:
        get_storage(url)
    assert msg in str(e.value) and "s3cret" not in str(e.value)


def test_instance_passes_through(tmp_path):
    st = get_storage(f"sqlite:///{tmp_path}/a.db")
    assert get_storage(st) is st
    with pytest.raises(StorageError, match="expected a URL"):
        get_storage(3)


@pytest.mark.parametrize("text, want", [
    ("postgresql://user:p@ss@host/db", "postgresql://user:***@host/db"),
    ("postgresql://user:a@b@c@host:5432/db", "postgresql://user:***@host:5432/db"),
    ("storage: cannot open 'postgresql://user:p@ss@host' now", "storage: cannot open 'postgresql://user:***@host' now"),
    ("postgresql://user:pw@host/db?note=a@b", "postgresql://user:***@host/db?note=a@b"),
    ("mysql://u:p@ss@h/x and postgresql://v:q@r@k/y", "mysql://u:***@h/x and postgresql://v:***@k/y"),
])
def test_redact_password_with_at_signs(text, want):
    assert redact(text) == want


def test_unreachable_storage_with_at_in_password_echoes_no_part_of_it():
    # SQLAlchemy ends the password at its first "@" and reads "cret@127.0.0.1" as the host; the driver names it.
    with pytest.raises(StorageError) as e:
        get_storage("postgresql://bob:s3@cret@127.0.0.1:1/db")
    msg = str(e.value)
    assert "cannot open postgresql+psycopg2://bob:***@127.0.0.1:1/db" in msg and "cret" not in msg, msg


def test_readers_never_create_a_database(tmp_path, monkeypatch):
    """``create=False`` (every read-only path) refuses a missing or empty SQLite file instead of creating one."""
    from nas.search import api

    monkeypatch.delenv("NAS_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    want = f"storage: no study database at {tmp_path.resolve() / 'nas_studies.db'}; run a search first"
    for read in (lambda: api.list_studies(), lambda: api.load_front("x"), lambda: api.load_points("x"),
                 lambda: api.pick_trial("x", best_quality=True), lambda: get_storage(None, create=False)):
        with pytest.raises(StorageError, match=want.replace(".", r"\.")):
            read()
    (tmp_path / "empty.db").touch()  # what earlier versions left behind
    with pytest.raises(StorageError, match="no study database at .*empty.db"):
        get_storage("sqlite:///empty.db", create=False)
    assert [p.name for p in tmp_path.iterdir()] == ["empty.db"]
    assert get_storage("sqlite:///:memory:", create=False) is not None
    get_storage("sqlite:///s.db")  # a search creates it; readers open it
    assert api.list_studies(storage="sqlite:///s.db") == []


def _open_after(barrier, url, errors):
    barrier.wait()
    try:
        get_storage(url)
    except StorageError as e:
        errors.put(str(e))


def test_drivers_creating_one_database_at_the_same_moment_all_open_it(tmp_path):
    """Schema creation races (Optuna's version row inserted twice) end in an open storage, not an error."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    for round_ in range(3):
        url = f"sqlite:///{tmp_path}/race{round_}.db"
        barrier, errors = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_after, args=(barrier, url, errors)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0] * 4
        assert errors.empty(), errors.get()
