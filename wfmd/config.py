"""Configuration: embedded defaults < TOML file < environment < command-line flags.

The file is `$XDG_CONFIG_HOME/wfm/config.toml` (or `--config` / `WFM_CONFIG`); every key is
optional. Unknown keys are errors, so a typo is not silently ignored.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import msgspec

from wfmctl import paths

CONFIG_ENV = "WFM_CONFIG"
DATABASE_ENV = "WFM_DATABASE"
WORKFLOW_DIRS_ENV = "WFM_WORKFLOW_DIRS"


class ConfigError(Exception):
    pass


# Retention keys that the environment may set, as WFM_<KEY> (e.g. WFM_MAX_AGE_DAYS=90).
RETENTION_ENV_KEYS = (
    "max_age_days",
    "max_executions",
    "max_db_bytes",
    "retention_interval",
    "compress_after",
    "max_log_lines",
    "max_log_bytes",
    "archive",
    "archive_dir",
)

GIB = 1024 * 1024 * 1024


class WorkflowRetention(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[retention.workflows.ID]`: a workflow's own limits; a key left out keeps the global
    one. A workflow with its own entry is held to these limits only."""

    max_age_days: float | None = None
    max_executions: int | None = None


class RetentionTables(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The `[retention]` table: per-workflow overrides."""

    workflows: dict[str, WorkflowRetention] = {}


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    database: Path = msgspec.field(default_factory=lambda: paths.state_dir() / "wfm.db")
    socket: Path = msgspec.field(default_factory=paths.default_socket_path)
    # None means the defaults: the user's data dir, the legacy dir, the shipped examples.
    workflow_dirs: list[Path] | None = None
    # Runs beyond this many wait as NotStarted, in arrival order.
    max_concurrent: int = 8
    # Seconds between SIGTERM and SIGKILL when cancelling.
    cancel_grace: float = 10.0
    # Seconds a run may take unless the request says otherwise; 0 means no limit.
    default_timeout: float = 0.0
    # Longest a printed line waits for its group commit to begin, in seconds (endings are
    # committed at once): trades CPU per quiet workflow against follow latency, both measured
    # by bench_scale (tests/bench/RESULTS.md).
    commit_interval: float = 0.05
    # Seconds a workflow gets to answer --workflow-metadata.
    probe_timeout: float = 5.0
    # Seconds a running workflow may be held (blocked on its output) while the database
    # cannot take writes, before it is stopped and recorded as Failed.
    storage_hold_timeout: float = 30.0
    # Seconds between heartbeats (bounds the end time recorded for a crash).
    heartbeat_interval: float = 5.0
    # Seconds between checks for executions left Running without a supervisor.
    recovery_interval: float = 60.0
    # Index log lines for `wfmctl search`, in the background (false: rows wait, unindexed).
    search_index: bool = True
    log_level: str = "INFO"
    # Retention (README "Keeping history bounded"); a limit of 0 disables it. Finished
    # executions older than this many days are removed.
    max_age_days: float = 30.0
    # Only the newest this many executions are kept (finished ones beyond it are removed).
    max_executions: int = 10_000
    # Oldest finished executions are removed while the database's pages in use exceed this.
    max_db_bytes: int = GIB
    # Seconds between retention runs (one also runs right after start-up); 0: only on demand.
    retention_interval: float = 3600.0
    # An execution's log lines beyond either cap lose their middle while it runs (the first
    # and last halves stay, with a marker entry between them).
    max_log_lines: int = 10_000_000
    max_log_bytes: int = GIB
    # Log rows of executions that ended more than this many seconds ago are compressed.
    compress_after: float = 600.0
    # Archive before delete: each execution retention removes is first appended to a
    # compressed JSON-lines file of its month, in archive_dir (default: beside the database).
    archive: bool = False
    archive_dir: Path | None = None
    retention: RetentionTables = msgspec.field(default_factory=RetentionTables)

    def check(self) -> None:
        if self.max_concurrent < 1:
            raise ConfigError("max_concurrent must be at least 1")
        for name in ("cancel_grace", "commit_interval", "probe_timeout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        for name in ("heartbeat_interval", "recovery_interval", "storage_hold_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.default_timeout < 0:
            raise ConfigError("default_timeout must not be negative (0 means no limit)")
        for name in (
            "max_age_days",
            "max_executions",
            "max_db_bytes",
            "retention_interval",
            "compress_after",
            "max_log_lines",
            "max_log_bytes",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative (0 disables it)")
        for workflow, limits in self.retention.workflows.items():
            for name in ("max_age_days", "max_executions"):
                value = getattr(limits, name)
                if value is not None and value < 0:
                    raise ConfigError(
                        f"retention.workflows.{workflow}.{name} must not be negative"
                        " (0 disables it)"
                    )


def default_config_path() -> Path:
    return paths.config_dir() / "config.toml"


def load(config_path: Path | None, overrides: dict[str, object]) -> Config:
    """Build the configuration. `overrides` are flags given on the command line."""
    explicit = config_path or (Path(os.environ[CONFIG_ENV]) if CONFIG_ENV in os.environ else None)
    path = explicit or default_config_path()
    values: dict[str, object] = {}
    if path.exists() or explicit is not None:
        try:
            values = tomllib.loads(path.read_text("utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    if DATABASE_ENV in os.environ:
        values["database"] = os.environ[DATABASE_ENV]
    if paths.SOCKET_ENV in os.environ:
        values["socket"] = os.environ[paths.SOCKET_ENV]
    if WORKFLOW_DIRS_ENV in os.environ:
        values["workflow_dirs"] = [d for d in os.environ[WORKFLOW_DIRS_ENV].split(":") if d]
    for key in RETENTION_ENV_KEYS:
        if f"WFM_{key.upper()}" in os.environ:
            values[key] = os.environ[f"WFM_{key.upper()}"]
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = msgspec.convert(values, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration ({path}): {exc}") from exc
    config.database = config.database.expanduser()
    config.socket = config.socket.expanduser()
    if config.archive_dir is not None:
        config.archive_dir = config.archive_dir.expanduser()
    if config.workflow_dirs is not None:
        config.workflow_dirs = [d.expanduser() for d in config.workflow_dirs]
    config.check()
    return config
