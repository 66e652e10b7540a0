"""The package's shape: imports point one way, functions fit on a screen, help defaults come from the
dataclasses. Read from the source (ast), so function-level imports count too."""

from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path

import typer

from charrnn.cli import app
from charrnn.config import ModelConfig, TrainConfig

PACKAGE = Path(__file__).resolve().parents[1] / "charrnn"
MAX_BODY_LINES = 80


def import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the charrnn modules it imports anywhere in its source (top level or inside functions)."""
    modules = {p.stem for p in package.glob("*.py")}
    graph = {}
    for name in modules:
        deps = set()
        for node in ast.walk(ast.parse((package / f"{name}.py").read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "charrnn":
                deps |= {a.name for a in node.names if a.name in modules}  # from charrnn import scratch
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("charrnn."):
                deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("charrnn.")}
        graph[name] = deps - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a], or None (depth-first search with an explicit path)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for dep in sorted(graph.get(node, ())):
            if (cycle := visit(dep, path + [node])) is not None:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        if (cycle := visit(start, [])) is not None:
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_in_the_package():
    graph = import_graph(PACKAGE)
    assert graph["evaluate"] and "train" in graph["cli"]  # the graph sees function-level imports
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_functions_fit_on_a_screen():
    """Bodies only: a Typer command's parameter list is its flags, not its logic."""
    long = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) and len(node.body) > 1 else node.body
                lines = node.end_lineno - body[0].lineno + 1
                if lines > MAX_BODY_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions longer than a screen: " + ", ".join(long)


def test_train_help_defaults_are_the_dataclass_defaults():
    command = typer.main.get_command(app).commands["train"]
    defaults = {f.name: f.default for cls in (ModelConfig, TrainConfig) for f in fields(cls)}
    checked = 0
    for param in command.params:
        shown = re.search(r"\[default: ([^\]]*)\]", (param.help or "").replace("\\[", "["))
        name = {"out_dir": "out", "compile_": "compile"}.get(param.name, param.name)
        if shown is None or name not in defaults or defaults[name] is None or name in ("impl", "sample_prefix"):
            continue  # these describe a computed default in words
        value = defaults[name]
        if isinstance(value, bool):
            assert shown.group(1) == ("on" if value else "off"), param.name
        elif isinstance(value, (int, float)):
            assert float(shown.group(1)) == value, param.name
        else:
            assert shown.group(1) == str(value), param.name
        checked += 1
    assert checked >= 25
