"""The daemon's own upkeep on a schedule: the heartbeat, recovery of orphaned executions."""
