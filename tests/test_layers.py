"""The layering of the packages, read from every module's imports (AST, nothing run).

Bottom to top: common <- scenes <- worldmodels <- agents <- experiments <- app, with
benchmarks on top. A module may import its own layer and those below it, never one
above; nothing imports ``app`` but ``app`` itself and the benchmarks that drive a real
server through ``app.serve``. No import circle between our modules, whether the imports
sit at module level or inside functions. An import of our own modules inside a
function is for an optional heavy dependency only, and says so with a comment that
starts ``# heavy:`` on its line (what it pulls, and why not at the top).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("common", "scenes", "worldmodels", "agents", "experiments", "app", "benchmarks")
RANK = {name: i for i, name in enumerate(LAYERS)}
APP_FOR_BENCHMARKS = {"app.serve"}  # how a benchmark drives a real server


def sources(root: Path = ROOT) -> dict[str, tuple[str, str]]:
    """Module name -> (its file, its source), for every module of the layered packages."""
    out = {}
    for package in LAYERS:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = (str(path.relative_to(root)), path.read_text())
    return out


def imports(name: str, text: str, modules: set[str]) -> list[tuple[str, int, bool, str]]:
    """(target module, line, inside a function, the line's text) for each import of one
    of ``modules``; ``from a import b`` is an import of ``a.b`` where that is a module."""
    lines = text.splitlines()
    found = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                targets = [
                    f"{child.module}.{a.name}"
                    if f"{child.module}.{a.name}" in modules
                    else child.module
                    for a in child.names
                ]
            for target in targets:
                if target.split(".")[0] in RANK and target != name:
                    found.append((target, child.lineno, nested, lines[child.lineno - 1]))
            visit(child, inner)

    visit(ast.parse(text), False)
    return found


def violations(modules: dict[str, tuple[str, str]]) -> list[str]:
    """Every arrow against the layers, every circle and every function-level import of
    our own modules without a ``# heavy:`` comment, in words."""
    names = set(modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    out = []
    for name, (path, text) in sorted(modules.items()):
        for target, line, nested, source in sorted(set(imports(name, text, names))):
            where = f"{path}:{line} imports {target}"
            low, high = target.split(".")[0], name.split(".")[0]
            if (
                low == "app"
                and high != "app"
                and not (high == "benchmarks" and target in APP_FOR_BENCHMARKS)
            ):
                out.append(f"{where}: nothing outside app imports app")
            elif RANK[low] > RANK[high]:
                out.append(f"{where}: {low} is above {high}")
            if nested and "# heavy:" not in source:
                out.append(f"{where} inside a function, with no '# heavy:' reason")
            if target in graph:
                graph[name].add(target)
    out += [f"import circle: {' -> '.join([*c, c[0]])}" for c in circles(graph)]
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return groups


def test_the_tree_keeps_its_layers():
    found = violations(sources())
    assert not found, "\n".join(found)


def test_a_planted_circle_and_an_upward_arrow_are_caught():
    planted = {
        "agents.one": "from agents import two\n",
        "agents.two": "def f():\n    from agents.one import g\n",
        "scenes.low": "from experiments.evaluate import evaluate\n",
        "experiments.evaluate": "def evaluate():\n    pass\n",
        "worldmodels.lazy": "def f():\n    import scenes.low  # heavy: pybullet\n",
        "agents": "",
    }
    found = violations({name: (f"{name}.py", text) for name, text in planted.items()})
    assert "import circle: agents.one -> agents.two -> agents.one" in found
    assert any(
        "scenes.low.py:1 imports experiments.evaluate: experiments is above" in f for f in found
    )
    assert any("agents.two.py:2" in f and "no '# heavy:' reason" in f for f in found)
    assert not any("worldmodels.lazy.py" in f for f in found)  # a stated reason
    assert len(found) == 3


def test_every_module_is_read():
    names = sources()
    assert {"common.errors", "agents.agent", "experiments.evaluate", "app.main"} <= set(names)
    assert all(name.split(".")[0] in RANK for name in names)


def test_the_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.find("\n## ", 5) if "\n## " in layout[5:] else len(layout)]
    missing = [path for path, _ in sources().values() if f"`{path}`" not in layout]
    assert not missing, f"README's Layout does not name: {', '.join(missing)}"
