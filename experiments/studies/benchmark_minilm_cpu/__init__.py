"""Benchmark: the search against what a user would do instead (see ``run.py``)."""
