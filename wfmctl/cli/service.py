"""`wfmctl service install|uninstall|status`: wfmd as a systemd user service.

`install` writes the units shipped in `systemd/` (the wheel carries them as
`wfmctl/systemd/`) into the user's systemd directory, with `ExecStart=` set to the `wfmd`
installed beside this `wfmctl` and `Documentation=` to a copy of the README written next to
the user's other documentation. Then it runs `systemctl --user daemon-reload` and enables both
units. Nothing is written where systemd has no user manager to load them (a container,
macOS): the command says so in one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any, TextIO

from wfmctl import __version__
from wfmctl.cli.args import Args
from wfmctl.cli.exit_codes import EXIT_OK
from wfmctl.client import WfmError

SERVICE = "wfmd.service"
SOCKET = "wfmd.socket"
UNITS = (SOCKET, SERVICE)

# The first line of every unit `install` writes: `uninstall` removes only files that have it.
MARKER = "# Written by `wfmctl service install`"

# Error codes of this command (beside the daemon's, in WfmError.code).
NO_SYSTEMD = "no_systemd"  # no systemctl, or no user manager to talk to
SYSTEMCTL_FAILED = "systemctl_failed"  # a systemctl command failed

# Where systemd keeps the users who stay logged in (loginctl enable-linger).
LINGER_DIR = Path("/var/lib/systemd/linger")

# The properties `status` shows, as `systemctl show` names them.
PROPERTIES = ("Id", "LoadState", "UnitFileState", "ActiveState", "SubState", "MainPID")


class Output:
    """Lines for people, or one JSON document with --json. No text here comes from a
    workflow, so none needs escaping."""

    def __init__(self, as_json: bool, out: TextIO) -> None:
        self.json = as_json
        self.out = out

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def doc(self, **document: Any) -> None:
        print(json.dumps(document), file=self.out, flush=True)


def main(args: Args, as_json: bool, out: TextIO) -> int:
    output = Output(as_json, out)
    systemctl = find_systemctl()
    match args.action:
        case "install":
            return install(systemctl, output, now=args.now)
        case "uninstall":
            return uninstall(systemctl, output)
        case _:
            return status(systemctl, output)


# --------------------------------------------------------------------------- places


def unit_dir() -> Path:
    """The user's own systemd unit directory: `$XDG_CONFIG_HOME/systemd/user`."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "systemd" / "user"


def doc_path() -> Path:
    """Where `install` puts the README that `Documentation=` names."""
    return _xdg("XDG_DATA_HOME", ".local/share") / "doc" / "wfm" / "README.md"


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable, "")
    return Path(value) if os.path.isabs(value) else Path.home() / fallback


def shipped_units() -> dict[str, str]:
    """The units' text: from the wheel (`wfmctl/systemd/`), else from a source checkout."""
    packaged = resources.files("wfmctl").joinpath("systemd")
    sources: Any = packaged if packaged.is_dir() else Path(__file__).parents[2] / "systemd"
    try:
        return {name: sources.joinpath(name).read_text() for name in UNITS}
    except OSError as exc:
        raise WfmError("not_installed", f"this wfm has no systemd units: {exc}") from None


def find_wfmd() -> str:
    """The `wfmd` installed beside this `wfmctl` (same bin directory), else the one on PATH.

    Not resolved: in a virtualenv, bin/python is a link to the system's Python, and the
    virtualenv's own bin/wfmd is the one that matters.
    """
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "wfmd")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("wfmd")
    if found is None:
        raise WfmError("not_installed", "cannot find the wfmd executable beside wfmctl or on PATH")
    return os.path.abspath(found)


def readme_text() -> str | None:
    """The README of this installed wfm (its package metadata), else a checkout's."""
    try:
        text = metadata.metadata("wfm")["Description"]  # the body, for Metadata 2.1 and later
    except metadata.PackageNotFoundError:
        text = None
    if isinstance(text, str) and text.strip():
        return text
    checkout = Path(__file__).parents[2] / "README.md"
    return checkout.read_text() if checkout.is_file() else None


# --------------------------------------------------------------------------- unit text


def escape(value: str) -> str:
    """A value as unit files read it: `%` starts a specifier."""
    return value.replace("%", "%%")


def exec_argument(path: str) -> str:
    """`path` as the program of ExecStart=: `%` escaped, quoted if it has spaces. (`$` is
    left alone: systemd substitutes variables in the arguments only.) Raises WfmError for a
    path systemd refuses to run: one with quotes, backslashes or control characters."""
    if any(ch in "\"'\\\x7f" or ch < " " for ch in path):
        raise WfmError(
            "unsafe_path",
            f"systemd refuses to run a program whose path has quotes, backslashes or control "
            f"characters: {path!r}; install wfm elsewhere",
        )
    word = escape(path)
    return f'"{word}"' if any(ch.isspace() for ch in word) else word


def render(template: str, settings: dict[str, str]) -> str:
    """The template with each `Key=` line of `settings` replaced, after the MARKER line."""
    lines = [f"{MARKER} (wfm {__version__}); `wfmctl service uninstall` removes it."]
    missing = set(settings)
    for line in template.splitlines():
        key = line.partition("=")[0]
        if key in settings:
            line = f"{key}={settings[key]}"
            missing.discard(key)
        lines.append(line)
    if missing:
        raise WfmError("not_installed", f"the shipped unit has no {sorted(missing)} line")
    return "\n".join(lines) + "\n"


def write_file(path: Path, text: str) -> None:
    """Replace `path` with `text` at once: systemd never reads half a unit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.chmod(0o644)
    os.replace(partial, path)


# --------------------------------------------------------------------------- systemctl


def find_systemctl() -> str:
    """The systemctl to run, once it has shown that a user manager answers. Raises WfmError
    (one line) where there is no systemd, or no user manager: nothing is written then."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise WfmError(
            NO_SYSTEMD, "systemd is not available here (no systemctl on PATH): run wfmd yourself"
        )
    probe = _run(systemctl, "show", "--property=Version")
    if probe.returncode != 0:
        raise WfmError(
            NO_SYSTEMD,
            "there is no systemd user manager here to run wfmd "
            f"(systemctl --user: {_first_line(probe.stderr) or 'failed'}): run wfmd yourself",
        )
    return systemctl


def _run(systemctl: str, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [systemctl, "--user", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
    except OSError as exc:
        raise WfmError(NO_SYSTEMD, f"cannot run {systemctl}: {exc}") from None


def systemctl_user(systemctl: str, *args: str) -> str:
    """Run `systemctl --user ARGS`; its output. Raises WfmError if it fails."""
    done = _run(systemctl, *args)
    if done.returncode != 0:
        why = _first_line(done.stderr) or f"exit status {done.returncode}"
        raise WfmError(SYSTEMCTL_FAILED, f"systemctl --user {' '.join(args)} failed: {why}")
    return done.stdout


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def lingering() -> tuple[str, bool]:
    """This user's name, and whether their user manager outlives their sessions."""
    user = pwd.getpwuid(os.getuid()).pw_name
    return user, (LINGER_DIR / user).exists()


# --------------------------------------------------------------------------- the actions


def install(systemctl: str, view: Output, *, now: bool) -> int:
    wfmd = find_wfmd()
    exec_start = exec_argument(wfmd)  # before anything is written: it may refuse the path
    templates = shipped_units()
    directory = unit_dir()
    written = []
    settings = {}
    readme = readme_text()
    if readme is not None:
        doc = doc_path()
        write_file(doc, readme)
        written.append(doc)
        settings["Documentation"] = escape(doc.as_uri())
    for name in UNITS:
        unit_settings = dict(settings)
        if name == SERVICE:
            unit_settings["ExecStart"] = exec_start
        write_file(directory / name, render(templates[name], unit_settings))
        written.append(directory / name)
    ran: list[list[str]] = [["daemon-reload"], ["enable", *(["--now"] if now else []), *UNITS]]
    for args in ran:
        systemctl_user(systemctl, *args)
    user, linger = lingering()
    if view.json:
        view.doc(written=[str(p) for p in written], wfmd=wfmd, ran=ran, linger=linger)
        return EXIT_OK
    for path in written:
        view.line(f"wrote {path}")
    for args in ran:
        view.line(f"ran systemctl --user {' '.join(args)}")
    if now:
        view.line(f"wfmd ({wfmd}) is running under systemd: systemctl --user status wfmd")
    else:
        view.line(
            f"wfmd ({wfmd}) starts at your next login or on the first connection; "
            "now: systemctl --user start wfmd"
        )
    if not linger:
        view.line(
            f"workflows stop when you log out; to keep them running: loginctl enable-linger {user}"
        )
    return EXIT_OK


def uninstall(systemctl: str, view: Output) -> int:
    directory = unit_dir()
    present = [name for name in UNITS if (directory / name).exists()]
    steps: list[str] = []  # what was done, in order
    removed, kept = [], []
    if present:
        systemctl_user(systemctl, "disable", "--now", *present)
        steps.append(f"ran systemctl --user disable --now {' '.join(present)}")
    for path in [directory / name for name in present]:
        if path.read_text().startswith(MARKER):
            path.unlink()
            removed.append(path)
            steps.append(f"removed {path}")
        else:
            kept.append(path)
            steps.append(f"kept {path}: not written by wfmctl service install")
    doc = doc_path()
    if doc.exists():
        doc.unlink()
        removed.append(doc)
        steps.append(f"removed {doc}")
        with contextlib.suppress(OSError):  # only if empty
            doc.parent.rmdir()
    if present:
        systemctl_user(systemctl, "daemon-reload")
        steps.append("ran systemctl --user daemon-reload")
    else:
        steps.append(f"wfmd is not installed as a service (no units in {directory})")
    if view.json:
        view.doc(removed=[str(p) for p in removed], kept=[str(p) for p in kept])
    else:
        for step in steps:
            view.line(step)
    return EXIT_OK


def status(systemctl: str, view: Output) -> int:
    units = parse_show(
        systemctl_user(
            systemctl, "show", f"--property={','.join((*PROPERTIES, 'StatusText'))}", *UNITS
        )
    )
    directory = unit_dir()
    wfmd = exec_start(directory / SERVICE)
    user, linger = lingering()
    if view.json:
        view.doc(units=units, unit_dir=str(directory), wfmd=wfmd, linger=linger)
        return EXIT_OK
    for name in (SERVICE, SOCKET):
        view.line(f"{name}: {describe(units.get(name, {}))}")
    view.line(f"unit files: {directory}" + (f" (wfmd: {wfmd})" if wfmd else " (none)"))
    view.line(
        "linger: on (workflows keep running after you log out)"
        if linger
        else f"linger: off (workflows stop when you log out; loginctl enable-linger {user})"
    )
    return EXIT_OK


def parse_show(output: str) -> dict[str, dict[str, str]]:
    """`systemctl show` of several units: blocks of KEY=value lines, by their Id."""
    units: dict[str, dict[str, str]] = {}
    for block in output.split("\n\n"):
        fields = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        if "Id" in fields:
            units[fields["Id"]] = fields
    return units


def describe(unit: dict[str, str]) -> str:
    if unit.get("LoadState", "not-found") == "not-found":
        return "not installed (wfmctl service install)"
    text = f"{unit.get('ActiveState', '?')} ({unit.get('SubState', '?')}), "
    text += unit.get("UnitFileState") or "?"
    if unit.get("MainPID", "0") not in ("", "0"):
        text += f", pid {unit['MainPID']}"
    if unit.get("StatusText"):
        text += f": {unit['StatusText']}"
    return text


def exec_start(path: Path) -> str | None:
    """The program of a unit file's ExecStart=, as written."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("ExecStart="):
            return line.partition("=")[2]
    return None
