"""`wfmctl completion bash|zsh|fish`: shell completion scripts, and the live values they ask
for (`wfmctl completion --list workflows|handles`).

The scripts carry what never changes between two releases (subcommands, their options, the
status words), taken from the parser itself so they cannot drift from it. Workflow ids and
recent handles change all the time: the scripts run `wfmctl completion --list ...`, which
asks wfmd with a short timeout and prints nothing at all when it cannot answer, so that a
stopped daemon never makes a shell print errors or hang.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, TextIO

from wfmctl import protocol
from wfmctl.cli.args import Args

if TYPE_CHECKING:
    import argparse

SHELLS = ("bash", "zsh", "fish")
LISTS = ("workflows", "handles")

# How long a completion waits for wfmd: a shell waiting for a Tab is a person waiting.
LIST_TIMEOUT = 0.5
# Recent executions offered where a handle goes: a screenful.
RECENT_HANDLES = 20

# Where each kind of value goes: positional arguments by subcommand, and option values.
HANDLE_COMMANDS = ("status", "logs", "wait", "cancel", "params", "rerun")
WORKFLOW_COMMANDS = ("run", "workflows")
WORD_ARGUMENTS = {"completion": SHELLS, "service": ("install", "uninstall", "status")}
PATH_OPTIONS = ("--socket", "--cwd")


def main(args: Args, out: TextIO) -> int:
    if args.list is not None:
        with contextlib.suppress(Exception):  # silent: a shell is waiting, not a person
            values = live_values(args.list, getattr(args, "socket", None))
            out.write("".join(f"{value}\n" for value in values))
        return 0
    from wfmctl.cli.parser import build_parser

    options = options_by_command(build_parser())
    out.write(SCRIPTS[args.shell](options))
    return 0


def live_values(what: str, socket_path: str | None) -> list[str]:
    """Workflow ids, or recent handles (short, and `@last`), from wfmd; raises if it cannot."""
    from wfmctl.cli import render
    from wfmctl.client import Client

    with Client(socket_path, timeout=LIST_TIMEOUT) as client:
        if what == "workflows":
            return sorted(w.id for w in client.workflows().workflows)
        page = client.history(limit=RECENT_HANDLES)
        return [protocol.LAST_HANDLE, *render.short_handles([e.handle for e in page.executions])]


def options_by_command(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Every option string of every subcommand ("" for the top level), and which of them
    take a value (listed under "=" + command)."""
    import argparse

    found: dict[str, list[str]] = {}

    def collect(name: str, p: argparse.ArgumentParser) -> None:
        shown = [a for a in p._actions if a.help != argparse.SUPPRESS]
        found[name] = sorted(s for a in shown for s in a.option_strings)
        found["=" + name] = sorted(s for a in shown for s in a.option_strings if a.nargs != 0)

    collect("", parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                collect(name, sub)
    return found


def _commands(options: dict[str, list[str]]) -> list[str]:
    return [name for name in options if name and not name.startswith("=")]


def _valued(options: dict[str, list[str]]) -> list[str]:
    return sorted({s for name, strings in options.items() if name.startswith("=") for s in strings})


def _free(options: dict[str, list[str]]) -> list[str]:
    """Options whose value is free text: nothing to offer."""
    offered = ("--status", "--workflow", "--before", *PATH_OPTIONS)
    return [o for o in _valued(options) if o not in offered]


# --------------------------------------------------------------------------- bash


def bash_script(options: dict[str, list[str]]) -> str:
    commands = _commands(options)
    cases = "\n".join(f'        {name}) opts="{" ".join(options[name])}" ;;' for name in commands)
    words = "\n".join(
        f'        {name}) COMPREPLY=($(compgen -W "{" ".join(values)}" -- "$cur")) ;;'
        for name, values in WORD_ARGUMENTS.items()
    )
    return f"""\
# wfmctl completion for bash. Load it with:  source <(wfmctl completion bash)
_wfmctl_list() {{
    wfmctl completion --list "$1" 2>/dev/null
}}

_wfmctl() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local cmd="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            {"|".join(_valued(options))}) ((i++)) ;;
            -*) ;;
            *) cmd="${{COMP_WORDS[i]}}"; break ;;
        esac
    done
    case "$prev" in
        --status)
            COMPREPLY=($(compgen -W "{" ".join(protocol.ALL_STATUSES)}" -- "$cur")); return ;;
        --workflow)
            COMPREPLY=($(compgen -W "$(_wfmctl_list workflows)" -- "$cur")); return ;;
        --before)
            COMPREPLY=($(compgen -W "$(_wfmctl_list handles)" -- "$cur")); return ;;
        {"|".join(PATH_OPTIONS)})
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
        {"|".join(_free(options))})
            return ;;
    esac
    if [[ -z "$cmd" ]]; then
        if [[ "$cur" == -* ]]; then
            COMPREPLY=($(compgen -W "{" ".join(options[""])}" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "{" ".join(commands)}" -- "$cur"))
        fi
        return
    fi
    if [[ "$cur" == -* ]]; then
        local opts=""
        case "$cmd" in
{cases}
        esac
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    case "$cmd" in
        {"|".join(HANDLE_COMMANDS)})
            COMPREPLY=($(compgen -W "$(_wfmctl_list handles)" -- "$cur")) ;;
        {"|".join(WORKFLOW_COMMANDS)})
            COMPREPLY=($(compgen -W "$(_wfmctl_list workflows)" -- "$cur")) ;;
{words}
    esac
}}
complete -F _wfmctl wfmctl
"""


# --------------------------------------------------------------------------- zsh


def zsh_script(options: dict[str, list[str]]) -> str:
    commands = _commands(options)
    cases = "\n".join(
        f"        {name}) compadd -- {' '.join(options[name])} ;;" for name in commands
    )
    words = "\n".join(
        f"        {name}) compadd -- {' '.join(values)} ;;"
        for name, values in WORD_ARGUMENTS.items()
    )
    return f"""\
#compdef wfmctl
# wfmctl completion for zsh. Load it with:  source <(wfmctl completion zsh)
# (after compinit), or save it as _wfmctl in a directory of your $fpath.
_wfmctl_list() {{
    local -a values
    values=(${{(f)"$(wfmctl completion --list $1 2>/dev/null)"}})
    (( ${{#values}} )) && compadd -- $values
}}

_wfmctl() {{
    local cmd="" i
    for ((i = 2; i < CURRENT; i++)); do
        case ${{words[i]}} in
            {"|".join(_valued(options))}) ((i++)) ;;
            -*) ;;
            *) cmd=${{words[i]}}; break ;;
        esac
    done
    case ${{words[CURRENT-1]}} in
        --status) compadd -- {" ".join(protocol.ALL_STATUSES)}; return ;;
        --workflow) _wfmctl_list workflows; return ;;
        --before) _wfmctl_list handles; return ;;
        {"|".join(PATH_OPTIONS)}) _files; return ;;
        {"|".join(_free(options))}) return ;;
    esac
    if [[ -z $cmd ]]; then
        if [[ ${{words[CURRENT]}} == -* ]]; then
            compadd -- {" ".join(options[""])}
        else
            compadd -- {" ".join(commands)}
        fi
        return
    fi
    if [[ ${{words[CURRENT]}} == -* ]]; then
        case $cmd in
{cases}
        esac
        return
    fi
    case $cmd in
        {"|".join(HANDLE_COMMANDS)}) _wfmctl_list handles ;;
        {"|".join(WORKFLOW_COMMANDS)}) _wfmctl_list workflows ;;
{words}
    esac
}}
compdef _wfmctl wfmctl
"""


# --------------------------------------------------------------------------- fish


def fish_script(options: dict[str, list[str]]) -> str:
    commands = _commands(options)
    valued = set(_valued(options))
    lines = [
        "# wfmctl completion for fish. Load it with:  wfmctl completion fish | source",
        "# (or save it as ~/.config/fish/completions/wfmctl.fish)",
        "complete -c wfmctl -f",
        f"complete -c wfmctl -n __fish_use_subcommand -a '{' '.join(commands)}'",
    ]
    for name in commands:
        seen = f"__fish_seen_subcommand_from {name}"
        for option in options[name]:
            if option in ("-h", "--help"):
                continue
            flag = f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}"
            value = ""
            if option == "--status":
                value = f" -x -a '{' '.join(protocol.ALL_STATUSES)}'"
            elif option == "--workflow":
                value = " -x -a '(wfmctl completion --list workflows 2>/dev/null)'"
            elif option == "--before":
                value = " -x -a '(wfmctl completion --list handles 2>/dev/null)'"
            elif option in PATH_OPTIONS:
                value = " -r -F"
            elif option in valued:
                value = " -x"
            lines.append(f"complete -c wfmctl -n '{seen}' {flag}{value}")
    handles = " ".join(HANDLE_COMMANDS)
    workflows = " ".join(WORKFLOW_COMMANDS)
    lines += [
        f"complete -c wfmctl -n '__fish_seen_subcommand_from {handles}'"
        " -a '(wfmctl completion --list handles 2>/dev/null)'",
        f"complete -c wfmctl -n '__fish_seen_subcommand_from {workflows}'"
        " -a '(wfmctl completion --list workflows 2>/dev/null)'",
    ]
    for name, values in WORD_ARGUMENTS.items():
        lines.append(
            f"complete -c wfmctl -n '__fish_seen_subcommand_from {name}' -a '{' '.join(values)}'"
        )
    return "\n".join(lines) + "\n"


SCRIPTS = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}
