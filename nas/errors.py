"""One root error type and its subclasses.

Every mistake a user can make (a bad YAML field, an unknown label, a latency
table built for another space, an unknown trial) raises a subclass of
:class:`NASError` whose message names the offending field or key. The CLI maps
all of them to one line on stderr and exit code 1.
"""

from __future__ import annotations


class NASError(Exception):
    """Root of every error this package raises on purpose."""


class SpaceError(NASError, ValueError):
    """An invalid search space: bad YAML, unknown field, impossible choice."""


class ArchError(NASError, ValueError):
    """An architecture (``{label: choice}``) that does not fit its space."""


class ModelError(NASError, ValueError):
    """An unknown model family or a model source that cannot be loaded."""


class LatencyTableError(NASError, ValueError):
    """A latency table that is missing, corrupt, incomplete or for another space."""


class LatencyTableMismatchError(LatencyTableError):
    """A latency table measured for another phase, prompt/context length or int4 accuracy level than the one asked for."""


class DataError(NASError, FileNotFoundError):
    """Missing or malformed task data (e.g. WordNet not installed)."""


class ConfigError(NASError, ValueError):
    """An invalid experiment or trainer configuration."""


class StorageError(NASError, ValueError):
    """An unreachable or malformed study storage, or an unknown study/trial."""


class ExportError(NASError, RuntimeError):
    """An export whose output failed a verification check."""


class MissingDependencyError(NASError, ImportError):
    """An optional dependency is not installed; the message says how to install it."""


class StudyBusyError(StorageError):
    """Another live search driver holds the study's lease (the message names it and its heartbeat's age)."""


class SearchInterrupted(NASError):
    """A search stopped by SIGINT or SIGTERM after recording what finished; ``signum`` says which."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class DeviceError(ConfigError):
    """A device a trial asks for that the Ray cluster, the machine or the torch build cannot give (named)."""
