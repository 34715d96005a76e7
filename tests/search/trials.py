"""The light trial plug-in (:mod:`trainers.light`) with injected faults, for the search tests.

:data:`light` (``trial: tests.search.trials:light``) runs
:func:`trainers.light.light_trial`, which does what a search trial does minus the training: it picks a
random architecture of the space (seeded by ``config.seed``), derives the real
subnet from the tiny supernet, prices it with the latency table, and measures
quality as the cosine similarity of its pooled output to the full model's.

Faults for the fault-tolerance tests come from files in ``$NAS_TEST_FAULTS``:

* ``kill_first``: the first trial process that finds it SIGKILLs itself;
* ``raise_first``: the first trial that finds it raises;
* ``raise_always``: every trial raises;
* ``config_error_first``: the first trial that finds it raises a :class:`~nas.errors.ConfigError`;
* ``sleep_s``: every trial first sleeps that many seconds (so a driver can be killed mid-run);
* ``hold``: every trial waits while this file exists (the test removes it to let the trials finish).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from trainers.config import SearchConfig
from trainers.light import LightPlugin
from trainers.result import SearchResult


def _claim(d: Path, name: str) -> bool:
    """True exactly once per fault file across processes (atomic rename)."""
    try:
        os.rename(d / name, d / f"{name}.done")
        return True
    except FileNotFoundError:
        return False


def _faults() -> None:
    d = os.environ.get("NAS_TEST_FAULTS")
    if not d:
        return
    d = Path(d)
    if (d / "sleep_s").is_file():
        time.sleep(float((d / "sleep_s").read_text()))
    while (d / "hold").is_file():
        time.sleep(0.1)
    if (d / "raise_always").is_file():
        raise RuntimeError("injected failure (raise_always)")
    if _claim(d, "config_error_first"):
        from nas.errors import ConfigError

        raise ConfigError("target_ms: injected configuration error (config_error_first)")
    if _claim(d, "raise_first"):
        raise RuntimeError("injected failure (raise_first)")
    if _claim(d, "kill_first"):
        os.kill(os.getpid(), signal.SIGKILL)


class FaultyLight(LightPlugin):
    """:class:`trainers.light.LightPlugin` that first injects the faults of ``$NAS_TEST_FAULTS``."""

    def run(self, config: SearchConfig, *, progress=None, checkpoint_dir=None, device: str = "auto") -> SearchResult:
        _faults()
        return super().run(config, progress=progress, checkpoint_dir=checkpoint_dir, device=device)


light = FaultyLight()
