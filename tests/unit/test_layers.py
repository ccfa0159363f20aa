"""The import contract: layers only point down (ARCHITECTURE.md, "Boundaries").

    distilserve.core  (bottom: card, names, tensor names, percentile; nothing heavy)
      <- serving/, distill/   (never import each other)
      <- distilserve.cli      (top: nothing imports it)
    serving/rollout   pure decisions: no Ray, FastAPI, HTTP, database, clock or randomness
    model_repository/<model>/model.py   runs in Triton's stub: no distilserve, serving, Ray, FastAPI

Every import counts: module level, inside functions, under TYPE_CHECKING, and
`importlib.import_module("...")` / `__import__("...")` with a literal name. A violation fails
with file:line. Known ones that others are removing sit in ALLOWED with a reason; an entry that
no longer matches anything fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("distilserve", "serving", "distill", "loadtests", "scripts")
FIRST_PARTY = frozenset(PACKAGES)
MODEL_PY = "model_repository/*/model.py"


@dataclass(frozen=True)
class Import:
    file: str  # path relative to the repository root
    line: int
    importer: str  # dotted module name of the file
    module: str  # dotted name imported (for `from a import b`: both `a` and `a.b` are recorded)
    from_base: bool = False  # the `a` of `from a import b`: a rule's business, not a dependency edge


@dataclass(frozen=True)
class Violation:
    rule: str
    file: str
    line: int
    module: str
    why: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: imports {self.module} ({self.rule}: {self.why})"


def module_of(relpath: str) -> str:
    """'serving/rollout/decide.py' -> 'serving.rollout.decide'; a package's __init__ is the package."""
    parts = list(Path(relpath).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_in(relpath: str, source: str) -> list[Import]:
    importer = module_of(relpath)
    is_package = relpath.endswith("__init__.py")
    found: list[Import] = []
    for node in ast.walk(ast.parse(source, filename=relpath)):
        if isinstance(node, ast.Import):
            found += [Import(relpath, node.lineno, importer, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, importer, is_package)
            found.append(Import(relpath, node.lineno, importer, base, from_base=True))
            found += [Import(relpath, node.lineno, importer, f"{base}.{a.name}") for a in node.names if a.name != "*"]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and _dynamic_import(node.func)):
            found.append(Import(relpath, node.lineno, importer, node.args[0].value))
    return found


def _dynamic_import(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("__import__", "import_module"))


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@dataclass(frozen=True)
class Rule:
    name: str
    applies: Callable[[Import], bool]
    forbidden: Callable[[str], bool]
    why: str


HEAVY = ("torch", "transformers", "datasets", "accelerate", "onnxruntime", "ray", "fastapi", "starlette",
         "tritonclient", "httpx", "matplotlib")
IMPURE = ("ray", "fastapi", "starlette", "httpx", "requests", "urllib.request", "aiohttp", "grpc", "tritonclient",
          "sqlite3", "psycopg", "redis", "time", "datetime", "random", "secrets", "uuid", "socket", "subprocess",
          "threading", "asyncio")
IN_STUB = ("distilserve", "serving", "distill", "loadtests", "scripts", "ray", "fastapi", "starlette")


def _is_model_py(i: Import) -> bool:
    p = Path(i.file).parts
    return len(p) == 3 and p[0] == "model_repository" and p[2] == "model.py"


RULES = (
    Rule("cli-on-top", lambda i: not under(i.importer, "distilserve.cli"),
         lambda m: under(m, "distilserve.cli"), "nothing imports the CLI"),
    Rule("core-at-bottom", lambda i: under(i.importer, "distilserve.core"),
         lambda m: (under(m, "distilserve", *PACKAGES[1:], *HEAVY) and not under(m, "distilserve.core")),
         "the shared core imports only itself, the standard library and light libraries"),
    Rule("serving-not-distill", lambda i: under(i.importer, "serving"),
         lambda m: under(m, "distill"), "serving/ and distill/ meet only at the repository's files"),
    Rule("distill-not-serving", lambda i: under(i.importer, "distill"),
         lambda m: under(m, "serving"), "serving/ and distill/ meet only at the repository's files"),
    Rule("tools-on-top", lambda i: under(i.importer, "distilserve", "serving", "distill"),
         lambda m: under(m, "loadtests", "scripts"), "benchmarks and scripts are not imported by the product"),
    Rule("rollout-pure", lambda i: under(i.importer, "serving.rollout"),
         lambda m: under(m, *IMPURE) or (under(m, "serving") and not under(m, "serving.rollout")),
         "pure decisions: no Ray, web, HTTP, database, clock or randomness; I/O lives in serving/control"),
    Rule("model-py-in-stub", _is_model_py, lambda m: under(m, *IN_STUB),
         "model.py runs inside Triton's Python stub"),
)


def violations(files: Mapping[str, str]) -> list[Violation]:
    """Every rule broken by `files` ({relative path: source}), plus first-party import cycles."""
    imports = [i for path, source in sorted(files.items()) for i in imports_in(path, source)]
    found = [Violation(r.name, i.file, i.line, i.module, r.why)
             for i in imports for r in RULES if r.applies(i) and r.forbidden(i.module)]
    return _dedupe(found + _cycles(imports, {module_of(p) for p in files}))


def _dedupe(found: Iterable[Violation]) -> list[Violation]:
    # `from a import b` records `a` and `a.b`; report the most specific name once per line and rule.
    best: dict[tuple[str, str, int], Violation] = {}
    for v in found:
        key = (v.rule, v.file, v.line)
        if key not in best or len(v.module) > len(best[key].module):
            best[key] = v
    return sorted(best.values(), key=lambda v: (v.file, v.line, v.rule))


def _cycles(imports: list[Import], modules: set[str]) -> list[Violation]:
    """Edges between first-party modules that lie on a cycle (Tarjan's strongly connected components)."""
    edges: dict[str, dict[str, Import]] = {m: {} for m in modules}
    named = {(i.file, i.line) for i in imports if not i.from_base}
    for i in imports:
        if i.from_base and (i.file, i.line) in named:
            continue  # `from a import b` depends on a.b (a module) or on a (b defined in a), not on both
        target = i.module
        while target and target not in modules:  # `from pkg import name` -> the module that holds it
            target = target.rpartition(".")[0]
        if target and target != i.importer and i.importer in edges:
            first = edges[i.importer].get(target)
            if first is None or i.line < first.line:
                edges[i.importer][target] = i
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    component: dict[str, int] = {}

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            while True:
                w = stack.pop()
                component[w] = index[v]
                if w == v:
                    break

    for v in sorted(edges):
        if v not in index:
            visit(v)
    size: dict[int, int] = {}
    for c in component.values():
        size[c] = size.get(c, 0) + 1
    return [Violation("no-cycles", i.file, i.line, w, f"{v} and {w} import each other (directly or not)")
            for v, out in edges.items() for w, i in out.items()
            if component[v] == component[w] and size[component[v]] > 1]


def repository_files() -> dict[str, str]:
    paths = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")] + list(ROOT.glob(MODEL_PY))
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in paths}


# (rule, file, imported module) -> why it is still there. Remove an entry with its cause.
ALLOWED: dict[tuple[str, str, str], str] = {}


def test_the_repository_keeps_its_layers() -> None:
    found = violations(repository_files())
    unexpected = [str(v) for v in found if (v.rule, v.file, v.module) not in ALLOWED]
    assert not unexpected, "imports that point up or sideways:\n" + "\n".join(unexpected)
    stale = set(ALLOWED) - {(v.rule, v.file, v.module) for v in found}
    assert not stale, f"allowlisted imports that are gone (remove the entries): {sorted(stale)}"


def test_the_walk_sees_every_layer() -> None:
    files = repository_files()
    for expected in ("distilserve/core/names.py", "distilserve/cli/main.py", "serving/rollout/decide.py",
                     "distill/sweep.py", "loadtests/bench_overhead.py", "model_repository/sentiment/model.py"):
        assert expected in files
    assert len(files) > 80


PLANTED = [
    ("serving/ingress.py", "from distilserve.cli.admin import CliError\n", "cli-on-top"),
    ("distill/export.py", "def f():\n    import distilserve.cli.main\n", "cli-on-top"),
    ("serving/x.py", "from distilserve import cli\n", "cli-on-top"),
    ("serving/x.py", "import importlib\nimportlib.import_module('distilserve.cli.main')\n", "cli-on-top"),
    ("distilserve/core/card.py", "from serving.config import ServeConfig\n", "core-at-bottom"),
    ("distilserve/core/names.py", "import torch\n", "core-at-bottom"),
    ("distilserve/core/stats.py", "from distilserve.check import report\n", "core-at-bottom"),
    ("distilserve/core/stats.py", "from ..check import report\n", "core-at-bottom"),
    ("serving/registry/store.py", "from distill.data import load_splits\n", "serving-not-distill"),
    ("distill/export.py", "from serving.triton import codec\n", "distill-not-serving"),
    ("serving/metrics.py", "from loadtests import corpus\n", "tools-on-top"),
    ("serving/rollout/decide.py", "import time\n", "rollout-pure"),
    ("serving/rollout/stats.py", "from datetime import datetime\n", "rollout-pure"),
    ("serving/rollout/sticky.py", "import random\n", "rollout-pure"),
    ("serving/rollout/policy.py", "from serving.registry import Registry\n", "rollout-pure"),
    ("serving/rollout/policy.py", "from serving.control.rollouts import RolloutController\n", "rollout-pure"),
    ("serving/rollout/decide.py", "def f():\n    import httpx\n", "rollout-pure"),
    ("serving/rollout/__init__.py", "from ..registry import store\n", "rollout-pure"),
    ("model_repository/sentiment/model.py", "from distilserve.core.tensors import INPUT_TEXT\n",
     "model-py-in-stub"),
    ("model_repository/sentiment/model.py", "import ray\n", "model-py-in-stub"),
]


@pytest.mark.parametrize(("path", "source", "rule"), PLANTED, ids=[f"{r}:{p}:{s.split()[1]}" for p, s, r in PLANTED])
def test_the_checker_catches_a_planted_violation(path: str, source: str, rule: str) -> None:
    found = violations({path: source})
    assert [v.rule for v in found] == [rule], found
    assert found[0].file == path and found[0].line == source.count("\n", 0, source.rindex("import")) + 1


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("serving/rollout/decide.py", "import math\nfrom serving.rollout.policy import CanaryPolicy\n"
                                      "from distilserve.core.card import ModelCard\n"),
        ("serving/control/rollouts.py", "import time\nimport httpx\nfrom serving.registry import Registry\n"),
        ("distilserve/cli/main.py", "from distilserve.cli import admin\nimport serving.config\n"),
        ("distilserve/core/card.py", "from distilserve.core.names import MODEL_PATTERN\nimport pydantic\n"),
        ("model_repository/sentiment/model.py", "import numpy as np\nimport triton_python_backend_utils\n"),
        ("loadtests/bench_overhead.py", "from serving.ray_env import loopback_ray_env\n"),
    ],
    ids=["pure-rollout", "control-does-io", "cli-imports-down", "core-imports-core", "stub-libs", "bench-uses-serving"],
)
def test_imports_that_point_down_pass(path: str, source: str) -> None:
    assert violations({path: source}) == []


def test_a_planted_cycle_is_caught_on_both_edges() -> None:
    found = violations({"distill/a.py": "from distill.b import x\n", "distill/b.py": "def f():\n    from distill import a\n",
                        "distill/c.py": "from distill.a import y\n"})
    assert {(v.rule, v.file, v.line, v.module) for v in found} == {
        ("no-cycles", "distill/a.py", 1, "distill.b"), ("no-cycles", "distill/b.py", 2, "distill.a")}
