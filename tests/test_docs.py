"""The design notes in docs/ run and link as written.

Every ```python block of docs/*.md is run, each in a fresh namespace in an empty folder (so a block that uses a
name it does not define fails); they use the tiny test models and take seconds. Every relative Markdown link of
the docs and the README points to a file of the repository and, with a `#fragment`, to a heading of it.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")

BLOCKS = [
    pytest.param(code, id=f"{path.name}:{number}")
    for path in DOCS
    for number, (language, code) in enumerate(_FENCE.findall(path.read_text(encoding="utf-8")))
    if language == "python"
]


def test_each_design_note_has_a_code_example():
    for name in ("design.md", "soft_rl.md", "errors.md"):
        text = (ROOT / "docs" / name).read_text(encoding="utf-8")
        assert any(language == "python" for language, _ in _FENCE.findall(text)), f"docs/{name} has no example"


@pytest.mark.parametrize("code", BLOCKS)
def test_docs_python_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "<docs block>", "exec"), {"__name__": "__docs__"})


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.+)$", path.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("path", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_relative_links_point_to_files_and_headings(path):
    text = path.read_text(encoding="utf-8")
    assert "DESIGN.md" not in text, "DESIGN.md is not in the repository: cite docs/design.md (and its section)"
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, fragment = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{path.name}: link to {target!r}: no such file"
        if fragment and linked.suffix == ".md":
            assert fragment in _anchors(linked), f"{path.name}: link to {target!r}: no such heading"
