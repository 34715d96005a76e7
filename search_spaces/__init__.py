"""Declarative search spaces (``*.yaml``), installed with the package; see :mod:`nas.spaces.loader`."""
