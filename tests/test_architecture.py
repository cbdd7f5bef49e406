"""No import runs upward: the package's parts stand in layers, and each imports only from layers below it.

Every module under ``src/pseudohealthy`` is parsed (never imported) and each of its ``pseudohealthy`` imports,
absolute or relative, at module level or inside a function, is held against ``LAYERS``. A part may import its
own modules and any part of a lower layer; parts that share a layer are independent of each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "pseudohealthy"

# Bottom first. A part is a top-level module or subpackage of pseudohealthy ("pseudohealthy" itself: the
# package's __init__, which holds __version__).
LAYERS: list[tuple[str, ...]] = [
    # nothing of the package below them: the version, and the error users see as one line
    ("pseudohealthy", "errors"),
    # leaf helpers, each on its own: atomic files and NIfTI, devices, code identity, plain-array metrics,
    # the atlases that ship with installed packages, the work folder's layout
    ("io", "devices", "provenance", "metrics", "templates", "workdir"),
    # typed settings, read and written through io
    ("config",),
    # datasets: data turns a BIDS dataset into a work folder; the phantom writes a synthetic BIDS dataset and
    # its ground truth from the atlases and metrics alone, so test data never depend on the method they test
    ("data", "phantom"),
    # the method's pieces on arrays and tensors: anomaly maps and clusters, diffusion maths, the paper's
    # baselines (the control z-score reads the work folder's splits)
    ("anomaly", "diffusion", "baselines"),
    # a trained model: its networks, checkpoint format, where a work folder keeps it, how it loads, its card
    ("models",),
    # what is done with a model, each on its own: train it, detect with it, export it as one file
    ("training", "detect", "bundle"),
    # scoring, tuning and the benchmark run detect, train models and open exported ones
    ("evaluation",),
    # the command line drives everything
    ("cli",),
    # ``python -m pseudohealthy`` is the command line
    ("__main__",),
]
LAYER = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    """Whether ``pseudohealthy.a.b`` names a module or package of the source tree."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports_in(source: str, name: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every pseudohealthy module that the module ``name`` (its ``source``) imports."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package that holds the module, ``level - 1`` packages up
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:  # ``from pseudohealthy import workdir`` imports the module workdir
                sub = f"{module}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub) else module))
    return sorted({(line, module) for line, module in found if module.split(".")[0] == "pseudohealthy"})


def _imported(path: Path) -> list[tuple[int, str]]:
    return _imports_in(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _where(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def test_every_part_has_a_layer():
    parts = {_part(_module_name(path)) for path in _modules()}
    assert parts - set(LAYER) == set(), "give each new part of the package its place in LAYERS"
    assert set(LAYER) - parts == set(), "LAYERS names parts the package no longer has"


def test_no_import_runs_upward_or_sideways():
    wrong = []
    for path in _modules():
        part = _part(_module_name(path))
        for line, module in _imported(path):
            target = _part(module)
            if target != part and LAYER.get(target, len(LAYERS)) >= LAYER[part]:
                wrong.append(f"{_where(path)}:{line} ({part}, layer {LAYER[part]}) imports {module} "
                             f"({target}, layer {LAYER.get(target, '?')})")
    assert wrong == [], "imports that do not run down the layers:\n" + "\n".join(wrong)


@pytest.mark.parametrize("source, expected", [
    ("from pseudohealthy.cli.main import main\n", "pseudohealthy.cli.main"),
    ("import pseudohealthy.detect.run\n", "pseudohealthy.detect.run"),
    ("def f():\n    from ..detect import run\n", "pseudohealthy.detect.run"),
    ("from . import slices\n", "pseudohealthy.data.slices"),
    ("from .. import __version__\n", "pseudohealthy"),
])
def test_imports_are_found_in_every_form(source, expected):
    """The checks above see absolute, relative and function-level imports (here of a module in data/)."""
    assert expected in [module for _, module in _imports_in(source, "pseudohealthy.data.probe")]
