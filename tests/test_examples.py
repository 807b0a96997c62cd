"""The SoftGRPO quickstart: the notebook is the script's cells, committed with the outputs of a real run, and it
executes top to bottom.

After editing the script, rebuild and execute the notebook (a 30-step CPU run, about 10 minutes with one thread)
with ``python tests/test_examples.py --execute``; ``python tests/test_examples.py`` rebuilds it without outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPT = EXAMPLES / "soft_grpo_quickstart.py"
NOTEBOOK = EXAMPLES / "soft_grpo_quickstart.ipynb"


def script_cells(path: Path = SCRIPT) -> list[tuple[str, str]]:
    """`(kind, source)` cells of a percent-format script: `# %%` code cells, `# %% [markdown]` text cells."""
    cells: list[tuple[str, list[str]]] = []
    for line in path.read_text().splitlines():
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines]
        out.append((kind, "\n".join(lines).strip("\n")))
    return out


def build_notebook(path: Path = NOTEBOOK) -> None:
    """Write the notebook from the script's cells (nbformat v4, Python 3 kernel)."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    notebook.metadata["language_info"] = {"name": "python"}
    for kind, source in script_cells():
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        notebook.cells.append(make(source))
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index}"
    nbformat.write(notebook, str(path))


#: the committed notebook's outputs stay small enough to read on GitHub (the reward curve PNG is most of it)
MAX_OUTPUT_BYTES = 120_000


def execute_notebook(path: Path = NOTEBOOK) -> None:
    """Run the notebook top to bottom in a scratch folder (its runs/ stay out of the repository) and save it
    with its outputs."""
    import tempfile

    import nbclient
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    with tempfile.TemporaryDirectory() as folder:
        nbclient.NotebookClient(
            notebook, timeout=3600, kernel_name="python3", resources={"metadata": {"path": folder}}
        ).execute()
    nbformat.write(notebook, str(path))


def printed(notebook) -> str:
    return "".join(
        o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    )


def test_notebook_is_the_script_committed_with_the_outputs_of_a_full_run():
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(str(NOTEBOOK), as_version=4)
    nbformat.validate(notebook)
    cells = [(cell.cell_type, cell.source) for cell in notebook.cells]
    assert cells == script_cells(), "the notebook is out of date: run `python tests/test_examples.py --execute`"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), (
        "the notebook is committed executed, top to bottom: run `python tests/test_examples.py --execute`"
    )
    outputs = [o for cell in code for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum(len(json.dumps(o)) for o in outputs) < MAX_OUTPUT_BYTES
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the reward curve, on GitHub
    text = printed(notebook)
    assert "reward: first 5 steps" in text and "(30 steps)" in text and "step 30/30 | reward" in text


@pytest.mark.slow
@pytest.mark.real_model
def test_notebook_executes_top_to_bottom(tmp_path, monkeypatch):
    """Two training steps of the quickstart, the plot, saving, reloading and soft generation."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("SOFT_GRPO_STEPS", "2")
    monkeypatch.setenv("SOFT_GRPO_OUTPUT", str(tmp_path / "quickstart"))
    notebook = nbformat.read(str(NOTEBOOK), as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    out = tmp_path / "quickstart"
    assert (out / "reward_curve.png").stat().st_size > 0
    adapter = out / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file() and (
        adapter / "generation_config.json"
    ).is_file()
    text = printed(notebook)
    assert "soft steps)" in text and "reward: first step" in text and "step 2/2 | reward" in text


if __name__ == "__main__":
    import sys

    build_notebook()
    if "--execute" in sys.argv[1:]:
        execute_notebook()
        print(f"wrote {NOTEBOOK}, executed")
    else:
        print(f"wrote {NOTEBOOK} without outputs (--execute runs it)")
