"""Where a trial trains: one device setting, resolved once per trial.

An experiment's ``run.device`` names it and ``run.gpus_per_trial`` is what Ray
reserves per trial (fractions share a GPU between trials). :func:`resolve_device`
turns the request into a torch device string:

* ``cpu`` → ``cpu``;
* ``auto`` → ``cuda:0`` when CUDA is available and the trial has GPUs (Ray gave
  it at least one, or it runs outside Ray), else ``cpu``;
* ``cuda`` / ``cuda:N`` → that GPU, or :class:`~nas.errors.DeviceError` naming the
  torch build (``torch.__version__``, ``torch.version.cuda``) when it has no usable
  CUDA, or naming Ray when the trial got no GPU. Nothing falls back silently.

Under Ray a trial sees only its own GPUs (``CUDA_VISIBLE_DEVICES``), so
``cuda:0`` is its first. Only training moves: latency is the table's, measured on
the target device (onnxruntime on the CPU for the shipped tables), whatever a trial
trained on.
"""

from __future__ import annotations

import re

from nas.errors import ConfigError, DeviceError

DEVICES = ("auto", "cpu", "cuda")  # and cuda:N
_CUDA = re.compile(r"cuda(:\d+)?")


def check_device(name: object) -> str:
    """``name`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ConfigError: ``"device: ..."`` for anything else.
    """
    if not isinstance(name, str) or not (name in DEVICES or _CUDA.fullmatch(name)):
        raise ConfigError(f"device: unknown device {name!r}; expected auto, cpu, cuda or cuda:N")
    return name


def torch_build() -> str:
    """``"torch 2.13.0+cpu (CUDA none)"``: the build a device error names."""
    import torch

    return f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})"


def resolve_device(requested: str, gpus_assigned: float | None, cuda_available: bool) -> str:
    """The torch device a trial trains on (see the module docstring).

    Args:
        requested: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        gpus_assigned: GPUs Ray gave the trial (``len(ray.get_gpu_ids())``); ``None`` outside Ray.
        cuda_available: ``torch.cuda.is_available()``.

    Raises:
        ConfigError: an unknown device string.
        DeviceError: ``cuda`` without usable CUDA (naming the torch build) or without a GPU from Ray.

    Example:
        >>> resolve_device("auto", 1, True), resolve_device("auto", 0, True), resolve_device("auto", None, False)
        ('cuda:0', 'cpu', 'cpu')
    """
    check_device(requested)
    if requested == "cpu":
        return "cpu"
    has_gpus = gpus_assigned is None or gpus_assigned > 0
    if requested == "auto":
        return "cuda:0" if cuda_available and has_gpus else "cpu"
    if not cuda_available:
        import torch

        why = "is a build without CUDA" if torch.version.cuda is None else "sees no GPU"
        raise DeviceError(f"device: {requested} asked for, but {torch_build()} {why}; "
                          "install a CUDA build of torch or set device: auto")
    if not has_gpus:
        raise DeviceError(f"device: {requested} asked for, but Ray gave this trial no GPU; set run.gpus_per_trial > 0")
    return "cuda:0" if requested == "cuda" else requested


def trial_device(requested: str = "auto", gpus_assigned: float | None = None) -> str:
    """:func:`resolve_device` with this process's torch (and a ``cuda:N`` it can see).

    Raises:
        ConfigError, DeviceError: as :func:`resolve_device`; also a ``cuda:N`` beyond the visible GPUs.
    """
    import torch

    device = resolve_device(requested, gpus_assigned, torch.cuda.is_available())
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise DeviceError(f"device: {requested} asked for, but {torch_build()} sees "
                          f"{torch.cuda.device_count()} GPU(s)")
    return device


def check_cluster_gpus(gpus_per_trial: float, cluster_gpus: float) -> None:
    """Refuse a search whose trials ask for more GPUs than the Ray cluster has (Tune would wait forever).

    Raises:
        DeviceError: ``"run.gpus_per_trial: ..."``.
    """
    if gpus_per_trial > 0 and cluster_gpus < gpus_per_trial:
        raise DeviceError(f"run.gpus_per_trial: {gpus_per_trial:g} GPU(s) per trial, but the Ray cluster has "
                          f"{cluster_gpus:g}; set gpus_per_trial: 0 to train on CPUs")
