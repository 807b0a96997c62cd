"""The code part of a stage's cache key: a digest of the source files the stage runs and of the versions of
the libraries they import, so that a stage saved by older code is not reused after that code changed.

The files are the stage module's *import closure* inside the two local packages (``grid_stages`` and
``hf_softthink``), read from the source with :mod:`ast` (nothing is imported):

* every import a module in the closure writes, at module level or inside a function, brings in the module it
  names (``from a import b`` brings in ``a``, and ``a.b`` when that is a module): the stage may call any
  function of a module it uses;
* importing ``a.b`` also runs the ``__init__.py`` of ``a``; such a parent package brings in the imports
  written at its module level (they run), but not those inside its functions (a lazy ``__getattr__`` such as
  ``hf_softthink``'s loader of the trainer runs only when that name is used, and then an import names it);
* a module that imports a name computed at run time (``importlib.import_module(name, __name__)`` and the
  like: invisible to a reading of the source) brings in every module of its package, subpackages included.

So the RL stage's digest covers ``hf_softthink/trainer/``, and the SFT stage's does not. Imports of other
top-level packages (not the standard library) add their installed version (``torch``, ``transformers``,
``trl``, ...), with the Python version; their own dependencies are not followed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path


def local_roots() -> dict[str, Path]:
    """The local packages whose source is digested, by top-level name: their folders."""
    spec = importlib.util.find_spec("hf_softthink")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("hf_softthink is not installed: run `pip install -e .` in the repository first")
    return {
        "grid_stages": Path(__file__).resolve().parent,
        "hf_softthink": Path(next(iter(spec.submodule_search_locations))).resolve(),
    }


def module_file(name: str, roots: Mapping[str, Path]) -> Path | None:
    """The source file of module ``name`` under ``roots`` (a package's ``__init__.py``), or None."""
    top, *rest = name.split(".")
    if top not in roots:
        return None
    path = roots[top].joinpath(*rest)
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if rest and path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def module_imports(path: Path, module: str) -> tuple[list[str], list[str], bool, bool]:
    """What the imports of ``module`` (source ``path``) name, as absolute module names: ``(at module level,
    inside functions, imports by name at module level, imports by name inside functions)``.

    ``from a import b`` names ``a`` and ``a.b`` (``b`` may be a submodule); ``import_module("a.b")`` (one
    string argument) names ``a.b``; any other call of ``importlib.import_module`` or ``__import__`` (a name
    computed at run time, or relative to a package argument) is an import by name.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: dict[bool, list[str]] = {False: [], True: []}
    dynamic = {False: False, True: False}

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                names[inside].extend(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(parts + ([child.module] if child.module else []))
                else:
                    base = child.module or ""
                names[inside].extend([base, *(f"{base}.{a.name}" for a in child.names if a.name != "*")])
            elif isinstance(child, ast.Call) and _called_name(child) in ("import_module", "__import__"):
                first = child.args[0] if child.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str) and len(child.args) == 1:
                    names[inside].append(first.value)  # an absolute name written out: a plain import
                else:
                    dynamic[inside] = True
            visit(child, inside)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), False)
    return names[False], names[True], dynamic[False], dynamic[True]


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def package_modules(module: str, path: Path) -> list[str]:
    """Every module of the package that ``module`` (source ``path``) belongs to, subpackages included."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    folder = path.parent
    out = []
    for file in sorted(folder.rglob("*.py")):
        parts = file.relative_to(folder).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join((package, *parts)))
    return out


def source_closure(entry: str, roots: Mapping[str, Path]) -> tuple[dict[str, Path], set[str]]:
    """The local modules ``entry`` runs (name -> file, rules in the module docstring) and the top-level
    names of the other packages they import (standard library left out)."""
    files: dict[str, Path] = {}
    followed_inside: set[str] = set()  # modules whose in-function imports were followed
    libraries: set[str] = set()
    todo: list[tuple[str, bool]] = [(entry, True)]
    while todo:
        name, named = todo.pop()
        path = module_file(name, roots)
        if path is None:
            top = name.split(".")[0]
            if top and top not in roots and top not in sys.stdlib_module_names:
                libraries.add(top)
            continue
        first_visit = name not in files
        if not first_visit and (name in followed_inside or not named):
            continue
        files[name] = path
        eager, lazy, eager_dynamic, lazy_dynamic = module_imports(path, name)
        if first_visit:
            parts = name.split(".")
            todo.extend((".".join(parts[:i]), False) for i in range(1, len(parts)))
            todo.extend((imported, True) for imported in eager)
            if eager_dynamic:
                todo.extend((imported, True) for imported in package_modules(name, path))
        if named:
            followed_inside.add(name)
            todo.extend((imported, True) for imported in lazy)
            if lazy_dynamic:
                todo.extend((imported, True) for imported in package_modules(name, path))
    return files, libraries


def library_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed distribution -> version, for the top-level import ``names`` (unknown names left out)."""
    distributions = importlib.metadata.packages_distributions()
    versions = {}
    for name in names:
        for dist in distributions.get(name, ()):
            versions[dist] = importlib.metadata.version(dist)
    return dict(sorted(versions.items()))


def code_digest(entry: str, roots: Mapping[str, Path]) -> str:
    """Digest of the source files of ``entry``'s closure (by module name, so a renamed file counts), the
    versions of the libraries they import, and the Python version."""
    files, libraries = source_closure(entry, roots)
    digest = hashlib.sha1()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].read_bytes() + b"\0")
    versions = {"python": ".".join(map(str, sys.version_info[:2])), **library_versions(libraries)}
    digest.update(json.dumps(versions, sort_keys=True).encode())
    return digest.hexdigest()[:12]


@functools.cache
def stage_code_digest(stage: str) -> str:
    """:func:`code_digest` of the stage module ``grid_stages.<stage>`` (computed once per process)."""
    return code_digest(f"grid_stages.{stage}", local_roots())
