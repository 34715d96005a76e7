"""Measured latency tables (``*.json``), installed with the package; see :mod:`nas.latency`."""
