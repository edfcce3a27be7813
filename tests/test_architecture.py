"""The house rules a maintainer relies on, checked on the source: floors (nothing imports upward),
Streamlit only in the UI glue, no private name crossing a module, one error family, one writer."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import explorer
from explorer.errors import ExplorerError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "explorer"

# Each module's floor: a module may import from its own floor and the floors below, never above.
FLOORS = {
    0: ("errors", "targets", "atomic", "memo", "safe_files",
        "user_models", "runtime", "images", "checkpoints", "classifiers", "distributed",
        "backbones", "upsample", "presets", "datasets"),
    1: ("capture", "methods", "perturbation", "input_gradients", "metrics", "erf", "fcam", "pipeline", "controls"),
    2: ("views",),
    3: ("server_files", "jobs", "train", "fcam_train", "fcam_ablation", "fcam_sweep", "evaluate", "runs", "smoothing", "sanity",
        "layer_advisor"),
    4: ("ui",),
    5: ("cli", "cli_args", "__main__", "__init__", "notebook"),
}
FLOOR_OF = {name: floor for floor, names in FLOORS.items() for name in names}


def modules() -> list[tuple[str, Path]]:
    return sorted((".".join(p.relative_to(ROOT).with_suffix("").parts), p) for p in PACKAGE.rglob("*.py"))


def top(module: str) -> str:
    """explorer.erf.fit -> erf; explorer/__init__ -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def explorer_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) of every `explorer` import, lazy ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "explorer":
            names = [a.name for a in node.names]
            if node.module == "explorer":  # from explorer import views (a module) or compute_cams (the API)
                found += [(node.lineno, f"explorer.{n}" if (PACKAGE / n).is_dir() or (PACKAGE / f"{n}.py").is_file()
                           else "explorer.__init__", []) for n in names]
            else:
                found.append((node.lineno, node.module, names))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "explorer"]
    return found


def test_every_module_has_a_floor() -> None:
    assert {top(m) for m, _ in modules()} <= set(FLOOR_OF), {top(m) for m, _ in modules()} - set(FLOOR_OF)


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_nothing_imports_upward(module: str, path: Path) -> None:
    mine = FLOOR_OF[top(module)]
    upward = [(line, target) for line, target, _ in explorer_imports(path)
              if FLOOR_OF[top(target) if target != "explorer" else "__init__"] > mine]
    assert not upward, f"{module} (floor {mine}) imports from a higher floor: {upward}"


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_no_private_name_crosses_a_module(module: str, path: Path) -> None:
    private = [(line, target, n) for line, target, names in explorer_imports(path) for n in names
               if n.startswith("_") and target != module]
    assert not private, f"{module} imports private names: {private}"


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_streamlit_only_in_the_ui_glue(module: str, path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    uses = [node.lineno for node in ast.walk(tree)
            if (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "streamlit" for a in node.names))
            or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "streamlit")]
    assert top(module) == "ui" or not uses, f"{module} imports streamlit at lines {uses}"


def test_every_error_class_is_an_explorer_error() -> None:
    """One family: every *Error class the engine defines derives from ExplorerError (control-flow
    exceptions such as TrainInterrupted are not errors a user made and keep their own bases)."""
    strays = []
    for info in pkgutil.walk_packages(explorer.__path__, "explorer."):
        if info.name.startswith("explorer.ui"):
            continue  # the glue raises none of its own; importing it needs no Streamlit runtime, but skip the cost
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == info.name and name.endswith("Error") and not issubclass(cls, ExplorerError):
                strays.append(f"{info.name}.{name}")
    assert not strays, strays


def test_one_atomic_writer() -> None:
    """No module but explorer.atomic renames a file into place or makes its own temporary name."""
    offenders = []
    for module, path in modules():
        if module == "explorer.atomic":
            continue
        text = path.read_text(encoding="utf-8")
        for marker in ("os.replace(", "mkstemp(", "os.getpid()"):
            if marker in text:
                offenders.append((module, marker))
    assert not offenders, offenders
