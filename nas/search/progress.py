"""Trial progress lines, relayed from the Ray workers to the driver's log.

Ray starts with ``log_to_driver=False`` (its workers' output is mostly Ray's own
noise), so a trial's progress lines (the trainer's per-step lines: search step,
temperature, expected latency, fine-tuning loss) travel through a small Ray queue
instead; a driver thread prints each one prefixed with its trial number. Progress
is best effort: a full or vanished queue drops lines, it never fails a trial.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

MAX_QUEUED = 1000  # lines waiting for the driver; beyond that a trial's lines are dropped


class LineRelay:
    """Driver side: a Ray queue (no CPU reserved) and a thread that prints what arrives.

    Use as a context manager after ``ray.init``; pass :attr:`queue` to the trials.
    """

    def __init__(self, say: Callable[[str], None], *, maxsize: int = MAX_QUEUED, poll_s: float = 0.5):
        from ray.util.queue import Queue

        self.say = say
        self.poll_s = poll_s
        self.queue = Queue(maxsize=maxsize, actor_options={"num_cpus": 0})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="nas-trial-progress", daemon=True)

    def __enter__(self) -> "LineRelay":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _drain(self) -> None:
        from ray.util.queue import Empty

        while not self._stop.is_set():
            try:
                line = self.queue.get(timeout=self.poll_s)
            except Empty:
                continue
            except Exception:  # the queue's actor is gone (Ray shutting down): nothing more will come
                return
            self.say(line)

    def close(self) -> None:
        """Stop the thread, print what is still queued, release the queue's actor."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5 * self.poll_s + 5)
        try:
            rest = self.queue.get_nowait_batch(self.queue.qsize())
        except Exception:
            rest = []
        for line in rest:
            self.say(line)
        try:
            self.queue.shutdown()
        except Exception:
            pass


def forwarder(queue: Any, prefix: str) -> Callable[[str], None]:
    """Trial side: a ``progress`` callable that puts ``prefix + line`` on the relay's queue."""

    def send(line: str) -> None:
        try:
            queue.put_nowait(prefix + line)
        except Exception:  # full, or the driver is gone: drop the line
            pass

    return send
