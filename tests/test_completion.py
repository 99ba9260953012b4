"""`tui-billing completion bash|zsh` (issue 13): scripts generated from the
argparse parser, checked by the real shells (bash always; zsh when installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest


def script(shell: str, tmp_path) -> str:
    """The script as a user gets it, from a fresh process; no store is opened or created."""
    store = tmp_path / "never.db"
    env = {**os.environ, "TUI_BILLING_DB": f"sqlite:///{store}"}
    proc = subprocess.run(
        [sys.executable, "-m", "tui_billing", "completion", shell], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert not store.exists()  # printing a script never creates or migrates a store
    return proc.stdout


BASH_CASES = [  # the words typed (the last one is being completed) -> words offered
    (["tui-billing", "fi"], {"find"}),
    (["tui-billing", "find", "--so"], {"--sort"}),
    (["tui-billing", "find", "--sort", ""], {"issue_date", "number", "total", "deadline", "risk"}),
    (["tui-billing", "find", "--sort", "=", "to"], {"total"}),  # --sort=to (bash splits at =)
    (["tui-billing", "--db", "sqlite:///x.db", "find", "--format", ""], {"csv", "table"}),
    (["tui-billing", "find", "--customer", "fi", "--a"], {"--account-type", "--after", "--all", "--asc"}),
    (["tui-billing", "jobs", ""], {"run"}),
    (["tui-billing", "jobs", "run", "--on"], {"--once"}),
    (["tui-billing", "completion", ""], {"bash", "zsh"}),
    (["tui-billing", "approve", "--st"], {"--status"}),
]


def test_bash_completion_script_is_valid_and_completes(tmp_path):
    text = script("bash", tmp_path)
    path = tmp_path / "tui-billing.bash"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    lines = [f"source {path}", "complete -p tui-billing"]
    for words, _ in BASH_CASES:
        quoted = " ".join(f"'{w}'" for w in words)
        lines.append(
            f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMPREPLY=(); _tui_billing; "
            'echo "reply:${COMPREPLY[*]}"'
        )
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", "\n".join(lines)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    out = proc.stdout.splitlines()
    assert "-F _tui_billing" in out[0] and "tui-billing" in out[0]
    replies = [set(line.removeprefix("reply:").split()) for line in out[1:]]
    for (words, want), got in zip(BASH_CASES, replies, strict=True):
        assert got == want, words


def test_bash_completion_knows_every_command_of_the_parser(tmp_path):
    """Generated, not written by hand: each sub-command and each of find's options appears."""
    import argparse

    from tui_billing.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    text = script("bash", tmp_path)
    path = tmp_path / "c.bash"
    path.write_text(text)
    proc = subprocess.run(
        [
            "bash",
            "--norc",
            "-c",
            f"source {path}; COMP_WORDS=(tui-billing ''); COMP_CWORD=1; "
            "_tui_billing; echo ${COMPREPLY[*]}; COMP_WORDS=(tui-billing find -); "
            "COMP_CWORD=2; _tui_billing; echo ${COMPREPLY[*]}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    commands, find_options = (set(line.split()) for line in proc.stdout.splitlines())
    assert commands == set(sub.choices)
    assert find_options == {o for a in sub.choices["find"]._actions for o in a.option_strings}


def test_completion_needs_a_shell_name(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tui_billing", "completion", "fish"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TUI_BILLING_DB": f"sqlite:///{tmp_path / 'x.db'}"},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "fish" in proc.stderr
    assert not (tmp_path / "x.db").exists()


ZSH = shutil.which("zsh")


@pytest.mark.skipif(ZSH is None, reason="zsh is not installed")
@pytest.mark.parametrize(
    "typed,expected",
    [
        ("tui-billing fi", "tui-billing find "),
        ("tui-billing find --so", "tui-billing find --sort "),
        ("tui-billing find --format c", "tui-billing find --format csv "),
        ("tui-billing find --sort=ri", "tui-billing find --sort=risk "),
        ("tui-billing jobs r", "tui-billing jobs run "),
        ("tui-billing completion z", "tui-billing completion zsh "),
    ],
)
def test_zsh_completion_completes_in_a_real_zsh(tmp_path, typed, expected):
    """A real interactive zsh (zpty) with compinit: Tab completes the line (Enter then
    records the line and clears it: nothing is run)."""
    path = tmp_path / "_tui-billing"
    path.write_text(script("zsh", tmp_path))
    assert subprocess.run([ZSH, "-n", str(path)], capture_output=True).returncode == 0
    driver, lines = tmp_path / "drive.zsh", tmp_path / "lines"
    driver.write_text(
        textwrap.dedent(f"""\
        zmodload zsh/zpty
        zpty z {ZSH} -f -i
        zpty -w z 'PROMPT="> "; unsetopt beep; autoload -U compinit; compinit -u -D; source {path}'
        zpty -w z 'accept-line() {{ print -r -- "<<$BUFFER>>" >> {lines}; BUFFER=""; zle .accept-line; }}'
        zpty -w z 'zle -N accept-line'
        zpty -w -n z {typed!r}$'\\t'
        sleep 0.5
        zpty -w -n z $'\\r'
        for i in {{1..150}}; do [[ -s {lines} ]] && break; sleep 0.1; done
        zpty -d z
        cat {lines}
        """)
    )
    proc = subprocess.run([ZSH, "-f", str(driver)], capture_output=True, text=True, timeout=60)
    assert f"<<{expected}>>" in proc.stdout, proc.stdout + proc.stderr
