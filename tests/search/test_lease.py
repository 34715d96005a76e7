"""The study's driver lease: the pure rule by hand, then two drivers on one SQLite study."""

import os
import subprocess
import sys
import time

import optuna
import pytest

from nas.errors import StudyBusyError
from nas.search.lease import LEASE_KEY, DriverLease, Lease, holder_is_dead, lease_verdict


def test_verdict_by_hand():
    live = Lease("h:1", "a", heartbeat=100.0)
    assert lease_verdict(None, now=100, stale_s=30, takeover=False) == "free"
    assert lease_verdict(Lease("h:1", "a", 0.0, released=True), now=100, stale_s=30, takeover=False) == "free"
    assert lease_verdict(live, now=120, stale_s=30, takeover=True) == "busy"  # 20 s old: alive, even for --resume
    assert lease_verdict(live, now=131, stale_s=30, takeover=False) == "busy"  # stale, but no --resume
    assert lease_verdict(live, now=131, stale_s=30, takeover=True) == "stale"
    assert lease_verdict(live, now=101, stale_s=30, takeover=True, dead=True) == "stale"


def test_holder_is_dead():
    import socket

    assert not holder_is_dead(f"{socket.gethostname()}:{os.getpid()}")
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert holder_is_dead(f"{socket.gethostname()}:{p.pid}")
    assert not holder_is_dead(f"another-host:{p.pid}")  # another host's process: only its heartbeat tells


@pytest.fixture
def study(tmp_path):
    return optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")


def test_second_driver_is_refused_naming_the_holder(study):
    first = DriverLease(study, takeover=False, heartbeat_s=0.2, settle_s=0.05)
    with first:
        for takeover in (False, True):  # a live holder is never taken over, not even by --resume
            with pytest.raises(StudyBusyError) as e:
                DriverLease(study, takeover=takeover, settle_s=0.05).acquire()
            assert first.mine.holder in str(e.value) and "s ago" in str(e.value)
        beat = first.read().heartbeat
        time.sleep(0.5)
        assert first.read().heartbeat > beat  # the heartbeat refreshes it
    assert first.read().released
    with DriverLease(study, takeover=False, settle_s=0.05):  # released: the next driver takes it
        pass


def test_stale_lease_is_taken_over_only_by_resume(study):
    dead = Lease("elsewhere:42", "old", heartbeat=time.time() - 100)
    study._storage.set_study_system_attr(study._study_id, LEASE_KEY, dead.to_dict())
    with pytest.raises(StudyBusyError, match="elsewhere:42.*it has died: pass --resume"):
        DriverLease(study, takeover=False, stale_s=30, settle_s=0.05).acquire()
    with DriverLease(study, takeover=True, stale_s=30, settle_s=0.05) as lease:
        assert lease.read().token == lease.mine.token


def test_of_two_simultaneous_writers_only_the_last_proceeds(study):
    a = DriverLease(study, takeover=False, settle_s=0.5)
    b = DriverLease(study, takeover=False, settle_s=0.05)
    import threading

    errors = []

    def take_a():
        try:
            a.acquire()
        except StudyBusyError as e:
            errors.append(e)

    t = threading.Thread(target=take_a)
    t.start()
    time.sleep(0.1)  # a wrote and is settling; b reads a's lease: busy
    with pytest.raises(StudyBusyError):
        b.acquire()
    t.join()
    assert not errors  # a found its own token and holds the study
    a.release()
