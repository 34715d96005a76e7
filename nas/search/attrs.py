"""The contract between a finished trial and everything that reads it (pareto, export).

Study: created with directions ``DIRECTIONS`` for objectives ``OBJECTIVES``
(values in that order). Optuna parameter names are the search hyperparameters
(``target_fraction``, ``loss``, ``lambda0``, ...). Each COMPLETE trial carries
these user attributes (JSON-serialisable):
"""

OBJECTIVES = ("quality", "latency_ms", "size_mb")
DIRECTIONS = ("maximize", "minimize", "minimize")

ARCH = "arch"  # {label: choice} of the chosen subnet
ARCH_SUMMARY = "arch_summary"  # nas.spaces.format_arch(...)
CONFIG = "config"  # trainers.SearchConfig.to_dict() of the trial
METRICS = "metrics"  # SearchResult.to_dict() minus history/arch (quality_before/after, latency, size, ...)
HISTORY = "history"  # a thinned list of per-step details dicts
SUBNET_DIR = "subnet_dir"  # absolute path of the saved subnet (Subnet.save: model.safetensors + subnet.json [+ head.safetensors])
SUBNET_SHA256 = "subnet_sha256"  # sha256 of model.safetensors, checked before export
HEAD_SHA256 = "head_sha256"  # sha256 of head.safetensors (classification trials only), checked before export
SPACE = "space"  # {"name", "hash"}; export refuses a subnet whose space hash differs
LATENCY_TABLE = "latency_table"  # {"id", "path", "space_hash", "device_fingerprint", "sha256", "copy"}
# "sha256": nas.latency.table.table_sha256 of the table the trial searched with: export finds the table by it
# (nas.search.tables.trial_table), never by "path" (which another working directory resolves elsewhere);
# "copy": the study's stored copy, <runs_dir>/<study>/tables/<sha256>.json (nas.search.tables.store_table_copy)
NAS_VERSION = "nas_version"
