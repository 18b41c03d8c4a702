"""The store's tables (SQLAlchemy Core), version ``SCHEMA_VERSION``.

One row per run (``tbench_runs``), per measured item (``tbench_items``), per numeric metric of an item
(``tbench_metrics``: the long form Grafana's SQL reads), and per change point ``tbench trend --record`` found
(``tbench_change_points``: the dashboard's annotations, kept with the date each was first found and the
date an analysis no longer found it). ``tbench_meta`` holds the schema version; a store
written by a newer tbench is refused, an older one is migrated (``store.MIGRATIONS``).

Times are stored timezone-aware, UTC. JSON documents are stored as text, so that SQLite and PostgreSQL hold
the same thing.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

SCHEMA_VERSION = 2

metadata = MetaData()

meta = Table(
    "tbench_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "tbench_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # A digest of what identifies the run (its date, machine, commit and items): importing the same JSON
    # twice stores it once.
    Column("run_key", String(64), nullable=False, unique=True),
    Column("measured_at", DateTime(timezone=True), nullable=False),
    Column("commit_id", String(64), nullable=False, default=""),
    Column("branch", Text, nullable=False, default=""),
    Column("dirty", Boolean, nullable=False, default=False),
    # The machine's label in history and trends: host name and the CPU or GPUs (not the software versions:
    # an upgrade of torch on the same box is a step in its line, not a new line).
    Column("machine", Text, nullable=False),
    Column("machine_json", Text, nullable=False),  # pytest-benchmark's machine_info, whole
    Column("settings_json", Text, nullable=False),  # the tbench settings (the store URL's password masked)
    Column("tbench_version", String(64), nullable=False, default=""),
    Column("pytest_benchmark_version", String(64), nullable=False, default=""),
    Column("source", Text, nullable=False),  # "pytest" or "import:<file name>"
)

items = Table(
    "tbench_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("tbench_runs.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),  # pytest-benchmark's fullname
    # "<mode>-<the item's case id>", e.g. forward-gpt2-b1-s64-cpu-float32
    Column("case_id", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("mode", String(32), nullable=False),
    Column("head", String(64), nullable=False, default=""),
    Column("batch_size", Integer, nullable=False),
    Column("seq_len", Integer, nullable=False),
    Column("new_tokens", Integer, nullable=False, default=0),
    Column("device", String(32), nullable=False),
    Column("dtype", String(32), nullable=False),
    Column("media", String(32), nullable=False, default=""),
    Column("variant", Text, nullable=False, default=""),  # the variant axes as the id names them; "" default
    Column("median_s", Float),
    Column("q1_s", Float),
    Column("q3_s", Float),
    Column("stddev_s", Float),
    Column("rounds", Integer, nullable=False, default=0),
    Column("rounds_json", Text, nullable=False, default="[]"),  # raw rounds, seconds (stats.data)
    Column("extra_json", Text, nullable=False, default="{}"),  # extra_info, whole (process_rounds included)
)

metrics = Table(
    "tbench_metrics",
    metadata,
    Column("item_id", Integer, ForeignKey("tbench_items.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(128), primary_key=True),  # the extra_info key, e.g. median_s, peak_memory_bytes
    Column("value", Float, nullable=False),
    Column("unit", String(32), nullable=False, default=""),  # metric_table.stored_unit(name)
)

change_points = Table(
    "tbench_change_points",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("machine", Text, nullable=False),
    Column("case_id", Text, nullable=False),
    Column("metric", String(128), nullable=False),
    Column("run_id", Integer, ForeignKey("tbench_runs.id", ondelete="CASCADE"), nullable=False),
    Column("measured_at", DateTime(timezone=True), nullable=False),  # the first run of the new level
    Column("commit_id", String(64), nullable=False, default=""),
    Column("ratio", Float, nullable=False),  # new level / old level
    Column("ratio_low", Float, nullable=False),
    Column("ratio_high", Float, nullable=False),
    Column("p_value", Float, nullable=False),
    Column("regression", Boolean, nullable=False),  # worse, by the metric's direction
    # When trend first found the step (kept when a later analysis finds it again, its position or ratio
    # refined), and when an analysis no longer found it (NULL: still found): the nightly gate's "new".
    Column("found_at", DateTime(timezone=True), nullable=False),
    Column("cleared_at", DateTime(timezone=True), nullable=True),  # schema version 2
)

Index("tbench_runs_measured_at", runs.c.measured_at)
Index("tbench_items_run", items.c.run_id)
Index("tbench_items_case", items.c.case_id, items.c.model, items.c.mode)
Index("tbench_metrics_name", metrics.c.name)
Index("tbench_change_points_series", change_points.c.machine, change_points.c.case_id, change_points.c.metric)
