"""The contract between a finished trial and everything that reads it (pareto, export).

Study: created with the experiment's objectives (default ``OBJECTIVES``; a decoder priced per
phase: ``PHASE_OBJECTIVES``), each with its direction from :data:`OBJECTIVE_DIRECTIONS`
(values in that order). Optuna parameter names are the search hyperparameters
(``target_fraction``, ``loss``, ``lambda0``, a per-budget ``target_fractions.ttft_ms``, ...);
objective names are set with ``study.set_metric_names`` (optuna-dashboard shows them). Each
COMPLETE trial carries these user attributes (JSON-serialisable, a few hundred bytes each),
and its step losses as intermediate values:
"""

from nas.latency.budgets import LATENCY_OBJECTIVES, TPOT, TTFT

OBJECTIVES = ("quality", "latency_ms", "size_mb")
DIRECTIONS = ("maximize", "minimize", "minimize")
PHASE_OBJECTIVES = ("quality", TTFT, TPOT, "size_mb")  # the default of an experiment with latency_tables
OBJECTIVE_DIRECTIONS = {"quality": "maximize", **{o: "minimize" for o in LATENCY_OBJECTIVES}, "size_mb": "minimize"}

ARCH = "arch"  # {label: choice} of the chosen subnet
ARCH_SUMMARY = "arch_summary"  # nas.spaces.format_arch(...)
CONFIG = "config"  # trainers.SearchConfig.to_dict() of the trial
METRICS = "metrics"  # SearchResult.to_dict() minus history/arch (quality_before/after, latency, size, ...)
# a decoder priced per phase also has "ttft_ms", "tpot_ms", "request_ms" (with output_tokens) and
# "targets": {budget: ms}; "latency_ms" is then the price under the config's latency_table
HISTORY_SUMMARY = "history"  # {"steps", "last", "values": {step: loss}}: short; the full history is an artifact
ARTIFACTS = "artifacts"  # {"subnet": [entry per file of Subnet.save], "history": entry of history.json}
# an entry: {"artifact_id", "filename", "mimetype", "encoding", "sha256", "bytes"} in the study's artifact
# store (nas.search.artifacts; the study attribute "artifact_store" names it); each file is also linked to
# the trial as Optuna's upload_artifact links it (system attribute "artifacts:<id>"), so optuna-dashboard lists it
NODE = "node"  # {"node_id", "host"}: the Ray node and host that ran the trial
SUBNET_DIR = "subnet_dir"  # studies before the artifact store: the subnet's local folder (still read by export)
SUBNET_SHA256 = "subnet_sha256"  # sha256 of model.safetensors, checked before export
HEAD_SHA256 = "head_sha256"  # sha256 of head.safetensors (classification trials only), checked before export
SPACE = "space"  # {"name", "hash"}; export refuses a subnet whose space hash differs
LATENCY_TABLE = "latency_table"  # {"id", "path", "space_hash", "device_fingerprint", "sha256"}
# "sha256": nas.latency.table.table_sha256 of the table the trial searched with: export finds the table by it
# (nas.search.tables.trial_table), never by "path" (which another working directory resolves elsewhere);
# the study stores that table as an artifact (study attribute "latency_tables": {sha256: entry})
LATENCY_TABLES = "latency_tables"  # {budget: entry as LATENCY_TABLE}: a trial priced per phase ("ttft_ms",
# "tpot_ms"; nas.latency.budgets), beside LATENCY_TABLE (the config's latency_table, one of them); the study
# stores each of these tables as an artifact too (nas.search.tables.trial_tables finds them again)
SHARED_SUPERNET = "shared_supernet"  # sha256 of the study's shared supernet the trial started from (nas.search.shared)
NAS_VERSION = "nas_version"
