"""Study storage: one resolver from ``None | URL | instance`` to an Optuna storage.

Contract: every storage is an ``optuna.storages.BaseStorage`` (an ``RDBStorage`` for
URLs), readable by Optuna's own tools (``optuna studies --storage URL``,
``optuna-dashboard URL``). Resolution order: the argument, then ``$NAS_STORAGE``,
then ``sqlite:///nas_studies.db`` in the working directory. Only a search creates a
database; readers (``nas pareto``, ``nas studies``, the query API, export) open
with ``create=False`` and get a :class:`StorageError` where there is none.

SQLite: only the search driver writes (Ray Tune's searcher tells Optuna in the
driver), and connections wait up to 60 s for a lock instead of failing, so
concurrent trials never see "database is locked". PostgreSQL
(``postgresql://user@host:5432/db``) needs the ``postgres`` extra (``psycopg2``).
Passwords never appear in messages: :func:`redact` them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.errors import MissingDependencyError, StorageError

ENV = "NAS_STORAGE"
DEFAULT_SQLITE = "nas_studies.db"
SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "mysql", "mysql+pymysql")

# ``user:password@``; the password runs to the last "@" before the host (an unescaped "@" in it is
# common), i.e. to the "@" not followed by another one before the next "/" or blank.
_PASSWORD = re.compile(r"(?P<user>[^\s:/@]+):(?P<pw>[^\s@/][^\s]*?)@(?![^\s/]*@)")


def redact(text: str) -> str:
    """``text`` (a URL, or a message holding one, well-formed or not) with passwords replaced by ``***``.

    Example:
        >>> redact("cannot open postgresql://bob:p@ss@db:5432/x")
        'cannot open postgresql://bob:***@db:5432/x'
    """
    return _PASSWORD.sub(lambda m: f"{m.group('user')}:***@", text)


def _redact_reason(reason: str, url: str) -> str:
    """A driver's error ``reason`` with no part of ``url``'s password.

    SQLAlchemy ends a password at its first ``@`` and reads the rest as the host name,
    which the driver then quotes (``could not translate host name "ss@db"``).
    """
    for m in _PASSWORD.finditer(url):
        tail = m.group("pw").partition("@")[2]
        if tail:
            reason = reason.replace(f"{tail}@", "***@")
    return redact(reason)


def default_url() -> str:
    """``$NAS_STORAGE`` or the SQLite file ``./nas_studies.db`` (absolute)."""
    env = os.environ.get(ENV)
    if env:
        return env
    return f"sqlite:///{Path(DEFAULT_SQLITE).resolve()}"


def resolve_url(url: str | None) -> str:
    """The storage URL to use, validated for shape (not yet connected).

    Raises:
        StorageError: a malformed URL or unknown scheme (password redacted).
    """
    url = url or default_url()
    if "://" not in url:
        raise StorageError(f"storage: {redact(url)!r} is not a URL (e.g. sqlite:///studies.db, "
                           "postgresql://user@host:5432/db)")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise StorageError(f"storage: unknown scheme {scheme!r} in {redact(url)!r}; known: {', '.join(SCHEMES)}")
    if scheme == "sqlite":
        path = url.split("://", 1)[1]
        if not path.startswith("/") or path == "/":
            raise StorageError(f"storage: {redact(url)!r}: sqlite URLs look like sqlite:///relative.db or "
                               "sqlite:////abs/path.db")
        parent = Path(path[1:]).resolve().parent
        if not parent.is_dir():
            raise StorageError(f"storage: {redact(url)!r}: folder {parent} does not exist")
    return url


def sqlite_file(url: str) -> Path | None:
    """The absolute path of a ``sqlite:///`` URL's file (``None`` for other schemes and ``:memory:``).

    Example:
        >>> str(sqlite_file("sqlite:////data/s.db?timeout=5"))
        '/data/s.db'
    """
    scheme, _, rest = url.partition("://")
    name = rest[1:].split("?", 1)[0] if scheme.lower() == "sqlite" and rest.startswith("/") else ""
    return Path(name).resolve() if name and name != ":memory:" else None


def _postgres_driver(url: str) -> str:
    """Plain ``postgresql://`` uses psycopg2 unless psycopg (3) is installed (SQLAlchemy 2.1 defaults to it)."""
    import importlib.util

    if url.split("://", 1)[0].lower() != "postgresql":
        return url
    if importlib.util.find_spec("psycopg") is not None:
        return url
    if importlib.util.find_spec("psycopg2") is None:
        raise MissingDependencyError("storage: PostgreSQL needs psycopg2: pip install 'nas-compress[postgres]'")
    return "postgresql+psycopg2://" + url.split("://", 1)[1]


def get_storage(storage: Any = None, *, create: bool = True):
    """Turn ``None``, a URL or a storage instance into an Optuna storage.

    Args:
        storage: ``None`` (``$NAS_STORAGE`` or ``./nas_studies.db``), a database URL,
            or an ``optuna.storages.BaseStorage`` (returned as is).
        create: ``False`` for every read-only use: a SQLite file that does not exist
            (or is empty) is an error instead of a new empty database. Server databases
            are never created here either way.

    Returns:
        An ``optuna.storages.BaseStorage`` that has been connected once.

    Raises:
        StorageError: malformed or unreachable storage (password redacted); with
            ``create=False``, no study database at a SQLite URL's path.
        MissingDependencyError: the database driver is not installed.

    Example:
        >>> st = get_storage("sqlite:///:memory:")  # doctest: +SKIP
        >>> st = get_storage("sqlite:///studies.db", create=False)  # doctest: +SKIP
    """
    import optuna

    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if storage is not None and not isinstance(storage, str):
        raise StorageError(f"storage: expected a URL or an Optuna storage, got {type(storage).__name__}")
    url = resolve_url(storage)
    db = sqlite_file(url)
    if not create and db is not None and not (db.is_file() and db.stat().st_size > 0):
        raise StorageError(f"storage: no study database at {db}; run a search first or point at one with "
                           f"--storage URL or {ENV}")
    scheme = url.split("://", 1)[0].lower()
    engine_kwargs: dict[str, Any] = {}
    if scheme == "sqlite":
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
        if scheme.startswith("postgresql"):
            url = _postgres_driver(url)
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        return _open_rdb(url, engine_kwargs)
    except ImportError:
        raise MissingDependencyError(f"storage: {redact(url)}: the database driver is not installed") from None
    except Exception as e:  # sqlalchemy errors carry the URL; never echo it raw
        reason = _redact_reason(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, url)
        raise StorageError(f"storage: cannot open {redact(url)}: {reason}") from None


def _open_rdb(url: str, engine_kwargs: dict[str, Any], attempts: int = 5):
    """``RDBStorage(url)``, retried when another process is creating the same schema.

    Two drivers starting on a new database both see no schema; both create the
    tables and insert Optuna's version row, and the slower one fails on the unique
    constraint (or a "table already exists"). A second attempt finds the schema
    complete, so the race ends in the study-level checks that name it.
    """
    import time

    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    for i in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (IntegrityError, OperationalError) as e:
            racing = isinstance(e, IntegrityError) or "already exists" in str(e) or "locked" in str(e)
            if not racing or i == attempts - 1:
                raise
            time.sleep(0.2 * (i + 1))


def retry_transient(fn: Callable[[], Any], attempts: int = 6, delay: float = 0.5) -> Any:
    """``fn()``, retried with exponential back-off on transient database errors (lock timeouts, dropped connections)."""
    import time

    from sqlalchemy.exc import DBAPIError

    for i in range(attempts):
        try:
            return fn()
        except DBAPIError:
            if i == attempts - 1:
                raise
            time.sleep(delay * (2 ** i))
