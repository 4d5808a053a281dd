"""The package's shape, read from the source with ``ast``: no import cycles among
``itpl`` modules (imports inside functions included: a lazy import that runs
the wrong way is still a dependency), rooms that import only the rooms below
them, and no module too long to read."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "itpl"
MAX_LINES = 365  # "about 350"
# Rooms from the bottom up: a module imports its own room and lower layers only.
# Rooms that share a layer (model, train, deploy) stand apart from each other.
LAYERS = [
    # the package's __init__ imports _memory only: its public names resolve lazily
    {"plumbing": ("itpl", "itpl._memory", "itpl._core", "itpl.util")},
    {"model": ("itpl.model",), "train": ("itpl.train",), "deploy": ("itpl.deploy",)},
    {"method": ("itpl.method",)},
    {"latency": ("itpl.latency",)},
    {"pipeline": ("itpl.pipeline", "itpl.config", "itpl.budget", "itpl.report", "itpl.plot")},
    {"api": ("itpl.api", "itpl.api_deploy")},
    {"cli": ("itpl.cli", "itpl.__main__")},
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    found["itpl._core"] = PACKAGE / "_core.pyi"  # the compiled core
    return found


def _imports(name: str, path: Path, modules) -> set[str]:
    """The itpl modules ``name`` imports anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .y import z
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from itpl import profile" names a submodule where one exists
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # import itpl.x.y -> the deepest module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph) -> list[list[str]]:
    """One cycle through each strongly connected set of modules (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                members.append(w)
                if w == v:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "itpl.cli.args" in graph["itpl.cli.app"]
    assert "itpl.pipeline" in graph["itpl.api"]  # imported inside prune()
    assert "itpl.deploy.devices.base" in graph["itpl.deploy.devices"]


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles():
    cycles = _cycles(import_graph())
    assert cycles == [], f"modules importing each other: {cycles}"


def test_no_module_is_too_long():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def _room(module: str) -> tuple[int, str]:
    best = None
    for layer, rooms in enumerate(LAYERS):
        for room, prefixes in rooms.items():
            for prefix in prefixes:
                if module == prefix or module.startswith(prefix + "."):
                    if best is None or len(prefix) > best[0]:
                        best = (len(prefix), layer, room)
    assert best is not None, f"{module} is in no room: add it to LAYERS"
    return best[1], best[2]


def test_rooms_import_downwards():
    upward = []
    for name, targets in import_graph().items():
        layer, room = _room(name)
        for target in targets:
            t_layer, t_room = _room(target)
            if t_room != room and t_layer >= layer:
                upward.append(f"{name} -> {target}")
    assert upward == [], f"imports that run up or sideways: {sorted(upward)}"
