"""The package layering: no import loop between vitedge's top-level packages and modules, and
the format registry loads without runtimes, converters or TensorFlow. Read with the stdlib `ast`
(every import statement counts, those inside functions too)."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vitedge"


def _unit(module: str) -> str | None:
    """'vitedge.export.tflite' -> 'export'; 'vitedge.artifact' -> 'artifact'; outside -> None."""
    parts = module.split(".")
    if parts[0] != "vitedge" or len(parts) < 2:
        return None
    return parts[1]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the vitedge modules `path` imports (relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from . import x` names a module
    return {m for m in found if m.startswith("vitedge")}


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        unit = _unit(_module_name(path)) if path != PACKAGE / "__init__.py" else None
        if unit is None:
            continue
        targets = {_unit(m) for m in _imports(path)} - {None, unit}
        # `from .. import __version__` names the package itself, not a sibling unit
        targets = {t for t in targets if t != "__version__"}
        graph.setdefault(unit, set()).update(targets)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_checker_sees_loops():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    graph = unit_graph()
    # known edges, so an empty graph (a broken parser) cannot pass the real test
    assert "formats" in graph["export"] and "formats" in graph["runtime"] and "runtime" in graph["quant"]


def test_no_import_loop_between_top_level_packages():
    cycle = find_cycle(unit_graph())
    assert cycle is None, "import loop: " + " -> ".join(cycle)


def test_format_registry_loads_without_runtimes_converters_or_tensorflow():
    code = ("import sys; from vitedge import formats; "
            "names = [f.name for f in formats.all_formats()]; "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'onnx', 'onnxruntime', "
            "'ai_edge_litert', 'tf2onnx', 'openvino', 'nncf') or m.startswith(('vitedge.runtime', 'vitedge.export', 'vitedge.quant'))); "
            "print(names, heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout.strip()
    assert out == "['tflite', 'onnx', 'ort', 'openvino'] []", out
