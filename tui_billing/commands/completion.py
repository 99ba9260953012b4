"""completion: shell completion scripts for bash and zsh, generated from the
argparse parser itself (sub-commands at every level, their options, the
choices argparse knows), so a new command or option completes without
touching this file.

    eval "$(tui-billing completion bash)"          # in ~/.bashrc
    source <(tui-billing completion zsh)           # in ~/.zshrc, after compinit

The script is printed while the command line is parsed and the command exits
there: it never opens (or creates) a store, so a shell's start-up stays fast.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field

PROG = "tui-billing"
SHELLS = ("bash", "zsh")
EMPTY = '""'  # the case pattern of the top level (path "")


@dataclass
class Level:
    """What one command level accepts: "" is the top, "jobs run" a nested one."""

    subcommands: dict[str, str] = field(default_factory=dict)  # name -> help
    options: dict[str, str] = field(default_factory=dict)  # option string -> help
    takes_value: set[str] = field(default_factory=set)
    choices: dict[str, list[str]] = field(default_factory=dict)  # option -> its choices
    positional_choices: list[str] = field(default_factory=list)


def spec_of(parser: argparse.ArgumentParser) -> dict[str, Level]:
    """Every command path of the parser and what it accepts."""
    levels: dict[str, Level] = {}

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        level = levels.setdefault(path, Level())
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help or "" for a in action._choices_actions}
                for name, child in action.choices.items():
                    level.subcommands[name] = helps.get(name, "")
                    walk(child, f"{path} {name}".strip())
            elif action.option_strings:
                text = "" if action.help in (None, argparse.SUPPRESS) else action.help
                for opt in action.option_strings:
                    level.options[opt] = text
                    if action.nargs != 0:
                        level.takes_value.add(opt)
                        if action.choices:
                            level.choices[opt] = [str(c) for c in action.choices]
            elif action.choices:
                level.positional_choices += [str(c) for c in action.choices]

    walk(parser, "")
    return levels


def _words(items) -> str:
    """Words for a case pattern or compgen -W: only shell-safe ones."""
    return " ".join(w for w in items if w and shlex.quote(w) == w)


def _short(text: str, width: int = 70) -> str:
    """A help text cut to its first clause and to `width`, for zsh's descriptions."""
    text = " ".join((text or "").split())
    for stop in ("; ", ". "):
        text = text.split(stop)[0]
    if len(text) > width:
        text = text[: width - 1].rsplit(" ", 1)[0].rstrip(",:") + "..."
    return text


def _case(lines: list[str], key: str, body: str) -> None:
    lines.append(f"        {shlex.quote(key) if key else EMPTY}) {body} ;;")


def bash_script(parser: argparse.ArgumentParser) -> str:
    spec = spec_of(parser)
    fn = "_tui_billing"
    subs: list[str] = []
    opts: list[str] = []
    takes: list[str] = []
    choices: list[str] = []
    words: list[str] = []
    for path, level in spec.items():
        if level.subcommands:
            _case(subs, path, f'case "$2" in {"|".join(shlex.quote(s) for s in level.subcommands)}) return 0 ;; esac')
        _case(opts, path, f"words={shlex.quote(_words(level.options))}")
        if level.takes_value:
            _case(
                takes,
                path,
                f'case "$2" in {"|".join(shlex.quote(o) for o in sorted(level.takes_value))}) return 0 ;; esac',
            )
        if level.choices:
            inner = " ".join(f"{shlex.quote(o)}) words={shlex.quote(_words(c))} ;;" for o, c in level.choices.items())
            _case(choices, path, f'case "$2" in {inner} esac')
        if level.subcommands or level.positional_choices:
            _case(words, path, f"words={shlex.quote(_words([*level.subcommands, *level.positional_choices]))}")
    return f"""# bash completion for {PROG}, generated from its parser by `{PROG} completion bash`.
# Use: eval "$({PROG} completion bash)" in ~/.bashrc, or save it as
# ~/.local/share/bash-completion/completions/{PROG}

{fn}_is_subcommand() {{  # PATH WORD
    case "$1" in
{chr(10).join(subs)}
    esac
    return 1
}}

{fn}_takes_value() {{  # PATH OPTION
    case "$1" in
{chr(10).join(takes)}
    esac
    return 1
}}

{fn}_options() {{  # PATH -> $words
    words=""
    case "$1" in
{chr(10).join(opts)}
    esac
}}

{fn}_choices() {{  # PATH OPTION -> $words
    words=""
    case "$1" in
{chr(10).join(choices)}
    esac
}}

{fn}_commands() {{  # PATH -> $words: sub-commands and positional choices
    words=""
    case "$1" in
{chr(10).join(words)}
    esac
}}

{fn}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="" path="" words="" w i
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        if [[ "$w" == "=" || "$w" == --*=* ]]; then
            continue
        elif [[ "$w" == -* ]]; then
            if {fn}_takes_value "$path" "$w"; then
                ((i++))
                [[ "${{COMP_WORDS[i]}}" == "=" ]] && ((i++))
            fi
        elif {fn}_is_subcommand "$path" "$w"; then
            path="${{path:+$path }}$w"
        fi
    done
    ((COMP_CWORD > 1)) && prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    if [[ "$cur" == "=" ]]; then
        cur=""
    elif [[ "$prev" == "=" ]] && ((COMP_CWORD > 2)); then
        prev="${{COMP_WORDS[COMP_CWORD-2]}}"
    fi
    if [[ "$prev" == -* ]] && {fn}_takes_value "$path" "$prev"; then
        {fn}_choices "$path" "$prev"
        # no choices (a file, a URL, a number): bash's default completion
        [[ -n "$words" ]] && COMPREPLY=($(compgen -W "$words" -- "$cur"))
        return 0
    fi
    if [[ "$cur" == -* ]]; then
        {fn}_options "$path"
    else
        {fn}_commands "$path"
    fi
    [[ -n "$words" ]] && COMPREPLY=($(compgen -W "$words" -- "$cur"))
    return 0
}}

complete -o default -F {fn} {PROG}
"""


def _zsh_pairs(items: dict[str, str]) -> str:
    return " ".join(
        shlex.quote(f"{name.replace(':', chr(92) + ':')}:{_short(text)}" if text else name)
        for name, text in items.items()
        if shlex.quote(name) == name
    )


def zsh_script(parser: argparse.ArgumentParser) -> str:
    spec = spec_of(parser)
    fn = "_tui_billing"

    def case(lines, key, body):
        lines.append(f"    ({shlex.quote(key) if key else EMPTY}) {body} ;;")

    subs: list[str] = []
    is_sub: list[str] = []
    opts: list[str] = []
    takes: list[str] = []
    choices: list[str] = []
    positional: list[str] = []
    for path, level in spec.items():
        if level.subcommands:
            case(subs, path, f"reply=({_zsh_pairs(level.subcommands)})")
            case(is_sub, path, f"case $2 in ({'|'.join(shlex.quote(s) for s in level.subcommands)}) return 0 ;; esac")
        case(opts, path, f"reply=({_zsh_pairs(level.options)})")
        if level.takes_value:
            case(
                takes,
                path,
                f"case $2 in ({'|'.join(shlex.quote(o) for o in sorted(level.takes_value))}) return 0 ;; esac",
            )
        if level.choices:
            inner = " ".join(f"({shlex.quote(o)}) reply=({_words(c)}) ;;" for o, c in level.choices.items())
            case(choices, path, f"case $2 in {inner} esac")
        if level.positional_choices:
            case(positional, path, f"reply=({_words(level.positional_choices)})")
    nl = "\n"
    return f"""#compdef {PROG}
# zsh completion for {PROG}, generated from its parser by `{PROG} completion zsh`.
# Use: source <({PROG} completion zsh) in ~/.zshrc after compinit, or save it
# as _{PROG} in a directory of $fpath.

{fn}_subcommands() {{ reply=(); case $1 in
{nl.join(subs)}
  esac }}

{fn}_is_subcommand() {{ case $1 in
{nl.join(is_sub)}
  esac; return 1 }}

{fn}_options() {{ reply=(); case $1 in
{nl.join(opts)}
  esac }}

{fn}_takes_value() {{ case $1 in
{nl.join(takes)}
  esac; return 1 }}

{fn}_choices() {{ reply=(); case $1 in
{nl.join(choices)}
  esac }}

{fn}_positional() {{ reply=(); case $1 in
{nl.join(positional)}
  esac }}

{fn}() {{
  local cmdpath="" w cur opt
  local -i i
  local -a reply cmds
  for (( i = 2; i < CURRENT; i++ )); do
    w=${{words[i]}}
    if [[ $w == --*=* ]]; then
      continue
    elif [[ $w == -* ]]; then
      {fn}_takes_value "$cmdpath" "$w" && (( i++ ))
    elif {fn}_is_subcommand "$cmdpath" "$w"; then
      cmdpath="${{cmdpath:+$cmdpath }}$w"
    fi
  done
  cur=${{words[CURRENT]}}
  if [[ $cur == --*=* ]]; then
    opt=${{cur%%=*}}
    compset -P '*='
    {fn}_choices "$cmdpath" "$opt"
    if (( ${{#reply}} )); then compadd -a reply; else _files; fi
    return
  fi
  if (( CURRENT > 2 )) && [[ ${{words[CURRENT-1]}} == -* ]] && {fn}_takes_value "$cmdpath" "${{words[CURRENT-1]}}"; then
    {fn}_choices "$cmdpath" "${{words[CURRENT-1]}}"
    if (( ${{#reply}} )); then compadd -a reply; else _files; fi
    return
  fi
  if [[ $cur == -* ]]; then
    {fn}_options "$cmdpath"
    _describe -t options option reply
    return
  fi
  {fn}_subcommands "$cmdpath"
  cmds=("${{reply[@]}}")
  {fn}_positional "$cmdpath"
  (( ${{#cmds}} )) && _describe -t commands command cmds
  (( ${{#reply}} )) && compadd -a reply
  (( ${{#cmds}} + ${{#reply}} )) || _files
}}

if [[ ${{zsh_eval_context[-1]}} == loadautofunc ]]; then
  {fn} "$@"
else
  compdef {fn} {PROG}
fi
"""


SCRIPTS = {"bash": bash_script, "zsh": zsh_script}


class _PrintScript(argparse.Action):
    """Prints the script as soon as the shell is parsed, then exits 0: no store is opened."""

    def __call__(self, parser, namespace, values, option_string=None):
        from ..cli import build_parser

        sys.stdout.write(SCRIPTS[values](build_parser()))
        sys.stdout.flush()
        parser.exit(0)


def register(sub) -> None:
    p = sub.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print a completion script for bash or zsh, generated from this tui-billing's commands.",
        epilog=f'bash:  eval "$({PROG} completion bash)"          in ~/.bashrc\n'
        f"zsh:   source <({PROG} completion zsh)           in ~/.zshrc, after compinit",
    )
    p.add_argument("shell", choices=SHELLS, action=_PrintScript, help="the shell to complete for: bash or zsh")
