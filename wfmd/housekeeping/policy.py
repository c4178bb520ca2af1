"""The retention policy in force: the configuration's limits, as retention applies them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wfmd.config import Config
from wfmd.store.retention import Limits, Policy

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Settings:
    """What retention enforces; None disables a limit."""

    policy: Policy
    max_db_bytes: int | None
    interval: float | None  # seconds between scheduled runs
    compress_after: float | None = None  # seconds after its end an execution is compressed
    archive_dir: Path | None = None  # archive before delete, into this directory

    def describe(self) -> dict[str, object]:
        """The settings in force, in the config file's words (for `wfmctl info`)."""

        def limits(x: Limits) -> dict[str, object]:
            age = None if x.max_age_ms is None else x.max_age_ms / DAY_MS
            return {"max_age_days": age, "max_executions": x.max_executions}

        return {
            **limits(self.policy.default),
            "max_db_bytes": self.max_db_bytes,
            "retention_interval": self.interval,
            "compress_after": self.compress_after,
            "archive_dir": None if self.archive_dir is None else str(self.archive_dir),
            "workflows": {w: limits(x) for w, x in sorted(self.policy.workflows.items())},
        }

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        def age(days: float | None, default: int | None) -> int | None:
            if days is None:
                return default
            return int(days * DAY_MS) if days > 0 else None

        def count(n: int | None, default: int | None) -> int | None:
            if n is None:
                return default
            return n if n > 0 else None

        default = Limits(age(config.max_age_days, None), count(config.max_executions, None))
        workflows = {
            wid: Limits(
                age(w.max_age_days, default.max_age_ms),
                count(w.max_executions, default.max_executions),
            )
            for wid, w in config.retention.workflows.items()
        }
        return cls(
            policy=Policy(default, workflows),
            max_db_bytes=config.max_db_bytes or None,
            interval=config.retention_interval or None,
            compress_after=config.compress_after or None,
            archive_dir=archive_dir(config),
        )


def archive_dir(config: Config) -> Path | None:
    """Where archives go, if on: `archive_dir`, or `archive/` beside the database."""
    if not config.archive:
        return None
    return config.archive_dir or config.database.parent / "archive"
