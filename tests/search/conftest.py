"""Storages for the search tests: every backend runs through the same test classes."""

import os
import uuid

import pytest

PG_URL = os.environ.get("NAS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_reachable() -> bool:
    try:
        import psycopg2

        psycopg2.connect(PG_URL.replace("postgresql+psycopg2://", "postgresql://"), connect_timeout=3).close()
        return True
    except Exception:
        return False


def require_postgres():
    if not postgres_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL not reachable at {PG_URL} in CI (.ci/run starts it)")
        pytest.skip(f"no PostgreSQL server at {PG_URL}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request, tmp_path):
    """A storage URL; for PostgreSQL the test's studies are deleted afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/studies.db"
        return
    require_postgres()
    import optuna

    before = set(optuna.study.get_all_study_names(storage=PG_URL.replace("postgresql://", "postgresql+psycopg2://")))
    yield PG_URL
    st = PG_URL.replace("postgresql://", "postgresql+psycopg2://")
    for name in set(optuna.study.get_all_study_names(storage=st)) - before:
        optuna.delete_study(study_name=name, storage=st)


@pytest.fixture
def study_name():
    return f"t-{uuid.uuid4().hex[:10]}"
