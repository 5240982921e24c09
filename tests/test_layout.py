"""The house's rules, checked: the package never imports streamlit, imports flow one way, the
console script and ``python -m`` both work, and the README's layout table matches the tree."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mnist_net"


def test_importing_every_module_of_the_package_never_imports_streamlit():
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    code = (
        "import sys, importlib, mnist_net\n"
        f"for m in {modules!r}: importlib.import_module('mnist_net.' + m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'altair', 'pandas'))\n"
        "print(' '.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _package_imports() -> dict[str, set[str]]:
    """module -> the package modules it imports (relative or absolute), read from the source."""
    graph = {}
    for path in PACKAGE.glob("*.py"):
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:
                    targets.add(node.module.split(".")[0])
                elif node.level == 1:
                    targets.update(a.name for a in node.names)
                elif node.module and node.module.startswith("mnist_net."):
                    targets.add(node.module.split(".")[1])
        graph[path.stem] = targets - {path.stem}
    return graph


def test_the_package_import_graph_has_no_circle():
    graph = _package_imports()
    graph.pop("__init__", None)  # the package's face imports what it exports
    done, on_path = set(), []

    def visit(module):
        if module in on_path:
            raise AssertionError(f"import circle: {' -> '.join(on_path[on_path.index(module) :] + [module])}")
        if module in done or module not in graph:
            return
        on_path.append(module)
        for target in sorted(graph[module]):
            visit(target)
        on_path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_no_function_level_imports_inside_the_package():
    """A function-level import "to avoid a circle" means the function lives in the wrong place."""
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
                assert not inner, f"{path.name}:{node.name} imports inside a function"


def test_console_script_and_module_give_the_same_help():
    via_module = subprocess.run(
        [sys.executable, "-m", "mnist_net", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    script = Path(sys.executable).with_name("mnist-net")
    assert script.exists(), "the mnist-net console script is not installed (pip install -e .)"
    via_script = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    assert via_module.replace("python -m mnist_net", "mnist-net") == via_script
    assert "{train,evaluate,export,predict,finetune}" in via_script


def test_readme_layout_table_lists_exactly_the_tree():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.M))
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    expected = {p for p in tracked if re.match(r"^(mnist_net|pages|pages/ui)/[^/]+\.py$", p)}
    expected |= {p for p in ("app.py",) if p in tracked}
    expected |= {p.split("/")[0] + "/" for p in tracked if p.split("/")[0] in ("tests", "benchmarks", "scripts")}
    missing, stale = expected - listed, {p for p in listed if p.endswith(".py")} - expected
    assert not missing and not stale, f"README layout: missing {sorted(missing)}, no longer in the tree {sorted(stale)}"
