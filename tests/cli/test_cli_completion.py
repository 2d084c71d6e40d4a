"""`odradek completion bash|zsh|fish` prints a completion script that completes.

Goal: the script knows every command, action and flag the parser has (it is generated
from it), and bash completes with it: a command's actions, a command's flags after
`-`. Method: print the script in a subprocess, then run bash with it loaded and ask its
completion function, as bash does on TAB; zsh and fish scripts checked for what they
must hold (neither shell is needed).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from odradek_process import run


def _complete(script: str, *words: str) -> list[str]:
    words_text = " ".join(f"'{word}'" for word in words)
    program = f"""{script}
COMP_WORDS=({words_text}); COMP_CWORD={len(words) - 1}; _odradek; printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_actions_and_flags() -> None:
    printed = run("completion", "bash")
    assert printed.returncode == 0, printed.stderr
    script = printed.stdout.decode()
    assert {"serve", "topic", "produce", "consume", "group", "key", "completion"} <= set(
        _complete(script, "odradek", "")
    )
    assert _complete(script, "odradek", "topic", "al") == ["alter"]
    assert set(_complete(script, "odradek", "--server", "grpc://h:1", "produce", "t", "--k")) == {
        "--key",
        "--keyed",
        "--key-separator",
    }
    assert "--last-per-key" in _complete(script, "odradek", "consume", "orders", "--")


def test_zsh_and_fish_scripts() -> None:
    zsh = run("completion", "zsh").stdout.decode()
    assert zsh.startswith("#compdef odradek") and "bashcompinit" in zsh and "complete -F _odradek" in zsh
    fish = run("completion", "fish").stdout.decode()
    assert "complete -c odradek -n __fish_use_subcommand -a" in fish
    assert "-l last-per-key" in fish and "-l key-separator" in fish
    refused = run("completion", "powershell")
    assert refused.returncode == 2
