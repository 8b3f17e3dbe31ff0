"""The house: dsl → compiler → runtime, one way; no import cycle between files; no file too long;
the package faces lazy. Read from the source (an AST scan), so a lazy import inside a function
counts like any other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"dsl": 0, "compiler": 1, "runtime": 2}
LIMITS = {"dsl/_parser.py": 259}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    """Dotted name below the package (`compiler._ir`, `runtime`, `_lazy`) → file."""
    files = [f for folder in LAYERS for f in (ROOT / folder).glob("*.py")] + list(ROOT.glob("*.py"))
    named = {}
    for f in files:
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        named[".".join(parts)] = f
    return named


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports, resolved to the files of `modules`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                base_name = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("eqn"):
                base_name = node.module[4:]
            else:
                continue
            # `from . import x` imports the module x; `from .m import name` the module m
            targets = [f"{base_name}.{alias.name}".strip(".") if f"{base_name}.{alias.name}".strip(".") in modules
                       else base_name for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name[4:] for alias in node.names if alias.name.startswith("eqn.")]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target in modules and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(name: str) -> int | None:
    return LAYERS.get(name.split(".")[0])


def test_the_scan_sees_the_imports():
    graph = _graph()
    assert "compiler._ir" in graph["compiler._algebra"]
    assert "dsl" in graph["compiler"] and "compiler" in graph["runtime._model"]


def test_layers_run_one_way():
    back = [f"{m} imports {t}" for m, targets in _graph().items() for t in targets
            if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m)]
    assert back == []


def test_no_import_cycle_between_files():
    graph = _graph()
    cycles = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]):
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_file_too_long():
    too_long = {}
    for folder in LAYERS:
        for f in (ROOT / folder).glob("*.py"):
            key = str(f.relative_to(ROOT))
            lines = len(f.read_text().splitlines())
            if lines > LIMITS.get(key, MAX_LINES):
                too_long[key] = lines
    assert too_long == {}


def _modules_loaded(code: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_the_language_loads_no_jax():
    loaded = _modules_loaded("import eqn.dsl, eqn; eqn.parse('model m')")
    assert "jax" not in loaded and "eqn.compiler" not in loaded


def test_check_loads_no_training_stack():
    loaded = _modules_loaded("from eqn.runtime.cli import main; assert main(['check', 'models/hopfield_mlp.eqn']) == 0")
    heavy = {"equinox", "optax", "lineax", "tensorflow_datasets", "matplotlib", "tqdm", "eqn.runtime._data",
             "eqn.runtime._model", "eqn.runtime._estimators"}
    assert loaded & heavy == set()
