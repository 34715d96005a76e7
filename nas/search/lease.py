"""One live driver per study: a lease kept in the study, refreshed by a heartbeat.

The lease is the study system attribute ``nas:driver_lease``:
``{"holder": "host:pid", "token": uuid, "heartbeat": unix time, "released": bool}``.
A driver acquires it before it touches any trial, refreshes it every
``heartbeat_s`` seconds while it runs and releases it when it ends. A second
driver (another terminal, or ``--resume`` while the first still runs) is
refused with :class:`~nas.errors.StudyBusyError` naming the holder and how old
its heartbeat is; a lease whose heartbeat is older than ``stale_s`` belongs to a
driver that died (SIGKILL, a lost machine), and ``--resume`` takes it over —
at once when the holder was a process of this host that no longer exists.

Optuna's storages have no compare-and-set, so acquiring writes the lease, waits
``settle_s`` and reads it back: of two drivers that wrote at nearly the same
moment only the last writer finds its own token and proceeds (the other is
refused). :func:`lease_verdict` is the pure rule; :class:`DriverLease` does the I/O.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from nas.errors import StudyBusyError

LEASE_KEY = "nas:driver_lease"
HEARTBEAT_S = 5.0
STALE_S = 30.0


@dataclass(frozen=True)
class Lease:
    holder: str
    token: str
    heartbeat: float
    released: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"holder": self.holder, "token": self.token, "heartbeat": self.heartbeat, "released": self.released}

    @classmethod
    def from_dict(cls, d: Any) -> "Lease | None":
        if not isinstance(d, dict) or not {"holder", "token", "heartbeat"} <= set(d):
            return None
        return cls(str(d["holder"]), str(d["token"]), float(d["heartbeat"]), bool(d.get("released", False)))


def lease_verdict(current: Lease | None, *, now: float, stale_s: float, takeover: bool, dead: bool = False) -> str:
    """``"free"`` (no live holder), ``"stale"`` (a dead holder: only ``takeover`` may take it) or ``"busy"``.

    A holder is dead when its heartbeat is older than ``stale_s``, or when ``dead``
    says so (its process is known to be gone: same host, no such pid).
    """
    if current is None or current.released:
        return "free"
    if dead or now - current.heartbeat > stale_s:
        return "stale" if takeover else "busy"
    return "busy"


def holder_is_dead(holder: str) -> bool:
    """True when ``holder`` (``host:pid``) is a process of this host that no longer exists."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class DriverLease:
    """Acquire, keep alive and release a study's driver lease (see the module docstring).

    Args:
        study: an Optuna study.
        takeover: whether a stale lease may be taken over (``--resume``).
    """

    def __init__(self, study: Any, *, takeover: bool, heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S,
                 settle_s: float = 1.0) -> None:
        self._storage, self._id, self._name = study._storage, study._study_id, study.study_name
        self.takeover, self.heartbeat_s, self.stale_s, self.settle_s = takeover, heartbeat_s, stale_s, settle_s
        self.mine = Lease(f"{socket.gethostname()}:{os.getpid()}", uuid.uuid4().hex, time.time())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> Lease | None:
        return Lease.from_dict(self._storage.get_study_system_attrs(self._id).get(LEASE_KEY))

    def _write(self, lease: Lease) -> None:
        self._storage.set_study_system_attr(self._id, LEASE_KEY, lease.to_dict())

    def _busy(self, current: Lease) -> StudyBusyError:
        age = time.time() - current.heartbeat
        gone = age > self.stale_s or holder_is_dead(current.holder)
        hint = ("it has died: pass --resume to take the study over" if gone else
                f"wait for it to finish or stop it (a driver that died is taken over by --resume once its "
                f"heartbeat is {self.stale_s:g} s old)")
        return StudyBusyError(f"study {self._name!r}: another search driver ({current.holder}) holds it, "
                              f"last heartbeat {age:.0f} s ago; {hint}")

    def check(self) -> Lease | None:
        """Raise :class:`StudyBusyError` if a live driver holds the study (read-only); returns the current lease."""
        current = self.read()
        dead = current is not None and holder_is_dead(current.holder)
        verdict = lease_verdict(current, now=time.time(), stale_s=self.stale_s, takeover=self.takeover, dead=dead)
        if verdict == "busy":
            assert current is not None
            raise self._busy(current)
        return current

    def acquire(self) -> None:
        """Take the lease or raise :class:`StudyBusyError`; starts the heartbeat."""
        current = self.check()
        self.mine = Lease(self.mine.holder, self.mine.token, time.time())
        self._write(self.mine)
        time.sleep(self.settle_s)
        now = self.read()
        if now is None or now.token != self.mine.token:
            raise self._busy(now or current or self.mine)
        self._thread = threading.Thread(target=self._beat, name=f"nas-lease-{self._name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self._write(Lease(self.mine.holder, self.mine.token, time.time()))
            except Exception:  # a transient database error: the next beat tries again
                pass

    def release(self) -> None:
        """Stop the heartbeat and mark the lease released (if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 5)
        try:
            current = self.read()
            if current is not None and current.token == self.mine.token:
                self._write(Lease(self.mine.holder, self.mine.token, time.time(), released=True))
        except Exception:  # the study is unreachable: the lease goes stale by itself
            pass

    def __enter__(self) -> "DriverLease":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
