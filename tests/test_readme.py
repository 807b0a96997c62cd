"""The README's code blocks run as a user would copy them.

Every ```python block is run verbatim, each in a fresh interpreter in an empty folder (so a block that
uses a name it does not define fails). Every `hf-softthink ...` command of a ```bash block is parsed by the
real argument parser (the long runs themselves are not repeated here: the set-up commands run in CI, the
demo and eval commands have their own tests).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hf_softthink.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def readme_blocks(language: str) -> list[str]:
    """The code of every fenced block of ``language`` in the README, in order."""
    return [code for lang, code in _FENCE.findall(README.read_text(encoding="utf-8")) if lang == language]


PYTHON_BLOCKS = readme_blocks("python")


def _first_line(code: str) -> str:
    return next((line for line in code.splitlines() if line.strip() and not line.startswith("#")), "")[:40]


def test_the_readme_has_python_blocks():
    assert len(PYTHON_BLOCKS) >= 2


@pytest.mark.real_model
@pytest.mark.slow
@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=[f"{i}:{_first_line(c)}" for i, c in enumerate(PYTHON_BLOCKS)])
def test_readme_python_block_runs_verbatim(code, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, f"the README block failed:\n{code}\n--- stderr ---\n{done.stderr[-4000:]}"


def _commands(block: str) -> list[str]:
    """The `hf-softthink ...` commands of a bash block (continuation lines joined, `&&` chains split)."""
    text = block.replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        for part in line.split("&&"):
            part = part.strip()
            if part.startswith("hf-softthink"):
                commands.append(part)
    return commands


BASH_COMMANDS = [c for block in readme_blocks("bash") for c in _commands(block)]


def test_the_readme_shows_the_demo_first():
    assert BASH_COMMANDS and BASH_COMMANDS[0] == "hf-softthink demo"


@pytest.mark.parametrize("command", BASH_COMMANDS)
def test_readme_command_lines_parse(command, monkeypatch):
    argv = shlex.split(command)[1:]
    if argv[:1] == ["lm-eval"]:  # passed on to lm-evaluation-harness's own parser untouched (cli.main)
        pytest.importorskip("lm_eval", reason="the lm-eval extra is not installed")
        from lm_eval._cli import HarnessCLI

        monkeypatch.setattr(sys, "argv", ["lm-eval", *argv[1:]])  # its parser reads sys.argv
        try:
            HarnessCLI().parse_args()
        except SystemExit as error:
            pytest.fail(f"`{command}` does not parse (exit {error.code})")
        return
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as error:  # argparse exits on an unknown flag or a bad value, and after --help / --version
        if error.code == 0 and {"--help", "-h", "--version"} & set(argv):
            return
        pytest.fail(f"`{command}` does not parse (exit {error.code})")
    assert callable(args.handler)
