"""The shape of the code, read from the source with `ast` (nothing is imported or run).

Imports run one way: train.py -> fold_trainer.py -> datasets/ -> models/ -> util/. util/ is
the ground floor (standard library, third-party packages and util/ only); no other file
imports a top-level script, except train.py -> fold_trainer.py; the stand-alone tools in
scripts/ may import anything and nothing imports them, except tradeoff's `--summary`, which
reads the report's tables (the one way the two share data), and the budget study, which extends
the recipe study and shares its helpers (job curves, the marks of the files it wrote). Tests may
import anything. No import cycles, no function longer than 80 lines and no class longer than 150.
"""
import ast

from tests.helpers import REPO

PACKAGES = ("util", "models", "datasets", "scripts", "tests")
# What each library package may import of ours.
LAYERS = {"util": {"util"}, "models": {"models", "util"}, "datasets": {"datasets", "models", "util"}}
SCRIPT_IMPORTS = {("train", "fold_trainer")}
TOOL_IMPORTS = {("scripts.tradeoff", "scripts.report")}
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 150


def source_files(root):
    """{dotted module name: path} of the top-level scripts and every module of PACKAGES."""
    paths = sorted(root.glob("*.py"))
    for package in PACKAGES:
        paths += sorted(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)
    files = {}
    for path in paths:
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def imported_names(name, path):
    """Every dotted name that module `name` imports, relative imports made absolute; for
    `from a import b` both a and a.b (b may be a submodule)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def import_graph(files):
    """{module: set of our modules it imports}; a name resolves to its longest known prefix."""
    graph = {}
    for name, path in files.items():
        targets = set()
        for imported in imported_names(name, path):
            parts = imported.split(".")
            known = [".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in files]
            if known:
                targets.add(known[0])
        graph[name] = targets - {name}
    return graph


def top(name):
    return name.split(".")[0]


def layer_violations(graph):
    return sorted(f"{a} imports {b}" for a, targets in graph.items() if top(a) in LAYERS
                  for b in targets if top(b) not in LAYERS[top(a)])


def script_violations(graph, files):
    scripts = {name for name, path in files.items() if "." not in name and path.name != "__init__.py"}
    return sorted(f"{a} imports the script {b}" for a, targets in graph.items()
                  if top(a) not in ("scripts", "tests")
                  for b in targets & scripts if (a, b) not in SCRIPT_IMPORTS)


def tool_violations(graph):
    return sorted(f"{a} imports the tool {b}" for a, targets in graph.items() if top(a) != "tests"
                  for b in targets if top(b) == "scripts" and b != "scripts" and (a, b) not in TOOL_IMPORTS)


def cycles(graph):
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(" <-> ".join(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def long_functions(files, limit=MAX_FUNCTION_LINES):
    return sorted(f"{name}:{node.lineno} {node.name} has {node.end_lineno - node.lineno + 1} lines"
                  for name, path in files.items() for node in ast.walk(ast.parse(path.read_text()))
                  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.end_lineno - node.lineno + 1 > limit)


def long_classes(files, limit=MAX_CLASS_LINES):
    return sorted(f"{name}:{node.lineno} {node.name} has {node.end_lineno - node.lineno + 1} lines"
                  for name, path in files.items() for node in ast.walk(ast.parse(path.read_text()))
                  if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > limit)


FILES = source_files(REPO)
GRAPH = import_graph(FILES)


def test_the_repository_is_read():
    assert {"train", "fold_trainer", "infer", "util.errors", "models.flops", "datasets.batches",
            "scripts.report", "tests.test_layout"} <= set(FILES)
    assert GRAPH["train"] >= {"fold_trainer", "models", "datasets", "util.errors"}


def test_util_is_the_ground_floor_and_models_sit_below_datasets():
    assert layer_violations(GRAPH) == []


def test_only_train_py_imports_a_top_level_script():
    assert script_violations(GRAPH, FILES) == []


def test_nothing_imports_a_stand_alone_tool():
    assert tool_violations(GRAPH) == []


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_no_function_is_longer_than_80_lines():
    assert long_functions(FILES) == []


def test_no_class_is_longer_than_150_lines():
    assert long_classes(FILES) == []


def test_the_checks_catch_a_tree_laid_out_against_the_grain(tmp_path):
    planted = {
        "util/__init__.py": "",
        "util/disk.py": "import os\nimport torch\nfrom models import registry\n",
        "models/__init__.py": "from .registry import build\n",
        "models/registry.py": "from datasets.cache import load\nfrom util import disk\n\ndef build():\n    pass\n",
        "datasets/__init__.py": "",
        "datasets/cache.py": "import models\n",
        "scripts/__init__.py": "",
        "scripts/report.py": "import trainer\nfrom . import plots\n",
        "scripts/plots.py": "",
        "trainer.py": "def long():\n" + "    x = 1\n" * 80 + "\n\ndef short():\n" + "    x = 1\n" * 79
                      + "\n\nclass Big:\n" + "    x = 1\n" * 150 + "\n\nclass Small:\n" + "    x = 1\n" * 149,
        "infer.py": "import trainer\n",
        "tests/test_x.py": "import infer\nfrom scripts import report\n",
    }
    for relative, text in planted.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    files = source_files(tmp_path)
    graph = import_graph(files)
    assert graph["util.disk"] == {"models", "models.registry"}
    assert layer_violations(graph) == ["models.registry imports datasets.cache", "util.disk imports models",
                                       "util.disk imports models.registry"]
    assert script_violations(graph, files) == ["infer imports the script trainer"]
    assert tool_violations(graph) == ["scripts.report imports the tool scripts.plots"]
    assert cycles(graph) == ["datasets.cache <-> models <-> models.registry <-> util.disk"]
    assert long_functions(files) == ["trainer:1 long has 81 lines"]
    assert long_classes(files) == ["trainer:166 Big has 151 lines"]
