"""An execution's progress: phases, their tasks, and the tasks' agents, built from the
structured events of its log (WORKFLOWS.md, "Output and structured events").

Pure data, no Textual: `Progress.apply` takes log entries in sequence order (raw output is
ignored) and the execution view draws the result as a tree. It holds one small record per
phase, task and agent, never the log itself, so a long log costs nothing here.
Events that break the contract (a task of an unknown phase, missing fields) are tolerated:
a task_progress for a task never started creates it, in no phase.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wfmctl.protocol import LogEntry

RUNNING = "running"
DONE = "done"
FAILED = "failed"

NO_PHASE = -1  # tasks whose events name no phase we know


@dataclass
class Agent:
    name: str
    description: str = ""
    state: str = RUNNING
    message: str = ""  # the latest message, result or error


@dataclass
class Task:
    task_id: str
    phase: int
    description: str = ""
    state: str = RUNNING
    message: str = ""
    agents: dict[str, Agent] = field(default_factory=dict)


@dataclass
class Phase:
    number: int
    name: str = ""
    state: str = RUNNING
    error: str = ""
    total_tasks: int | None = None
    tasks: dict[str, Task] = field(default_factory=dict)


@dataclass
class Progress:
    phases: dict[int, Phase] = field(default_factory=dict)
    total_phases: int | None = None
    state_files: list[str] = field(default_factory=list)
    last_seq: int = -1  # the last entry applied: entries up to it are counted
    changes: int = 0  # bumped by every event applied: redraw when it moved

    def apply(self, entries: Iterable[LogEntry]) -> None:
        """Take entries in sequence order; ones already applied (seq <= last_seq) are skipped."""
        for entry in entries:
            if entry.seq <= self.last_seq:
                continue
            self.last_seq = entry.seq
            if entry.type != "raw_output" and entry.event is not None:
                self._event(entry.type, entry.event)
                self.changes += 1

    def _phase(self, number: object) -> Phase:
        key = number if isinstance(number, int) else NO_PHASE
        phase = self.phases.get(key)
        if phase is None:
            phase = self.phases[key] = Phase(key)
        return phase

    def _task(self, task_id: str, phase: object = None) -> Task:
        for p in self.phases.values():
            if task_id in p.tasks:
                return p.tasks[task_id]
        owner = self._phase(phase)
        task = owner.tasks[task_id] = Task(task_id, owner.number)
        return task

    def _event(self, kind: str, ev: Mapping[str, Any]) -> None:
        text = _texts(ev)
        match kind:
            case "phase_started":
                phase = self._phase(ev.get("phase"))
                phase.name, phase.state, phase.error = text("name"), RUNNING, ""
                if isinstance(ev.get("total_phases"), int):
                    self.total_phases = ev["total_phases"]
            case "phase_completed":
                self._phase(ev.get("phase")).state = DONE
            case "phase_failed":
                phase = self._phase(ev.get("phase"))
                phase.state, phase.error = FAILED, text("error")
            case "task_started":
                phase = self._phase(ev.get("phase"))
                task = self._task(text("task_id"), ev.get("phase"))
                task.description, task.state, task.message = text("description"), RUNNING, ""
                if isinstance(ev.get("total_tasks"), int):
                    phase.total_tasks = ev["total_tasks"]
            case "task_progress":
                self._task(text("task_id")).message = text("message")
            case "task_completed":
                task = self._task(text("task_id"))
                task.state, task.message = DONE, text("result")
            case "task_failed":
                task = self._task(text("task_id"))
                task.state, task.message = FAILED, text("error")
            case "agent_started" | "agent_message" | "agent_completed" | "agent_failed":
                task = self._task(text("task_id"))
                name = text("agent_name")
                agent = task.agents.get(name)
                if agent is None:
                    agent = task.agents[name] = Agent(name)
                if kind == "agent_started":
                    agent.description, agent.state, agent.message = (
                        text("description"),
                        RUNNING,
                        "",
                    )
                elif kind == "agent_message":
                    agent.message = text("message")
                elif kind == "agent_completed":
                    agent.state, agent.message = DONE, text("result")
                else:
                    agent.state, agent.message = FAILED, text("error")
            case "state_file_created":
                self.state_files.append(text("file_path"))
            case _:
                pass  # an event type of a later contract: shown in the log only

    def counts(self) -> tuple[int, int]:
        """(phases done, phases known or announced)."""
        done = sum(1 for p in self.phases.values() if p.state == DONE and p.number != NO_PHASE)
        known = len([p for p in self.phases.values() if p.number != NO_PHASE])
        return done, max(known, self.total_phases or 0)


def _texts(ev: Mapping[str, Any]) -> Any:
    def text(name: str) -> str:
        value = ev.get(name)
        return "" if value is None else str(value)

    return text
