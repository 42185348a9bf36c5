"""The import graph of trainer/ (grimp, imports inside functions and under TYPE_CHECKING included)
holds the layering of docs/architecture.md ("Layers"): no import cycles, no import from a lower layer
to a higher one, and subpackage `__init__` files that say what lives there and import nothing."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "trainer"

# The layers, bottom to top: a module imports modules of its own package and of the layers below it.
LAYERS = [
    ("runtime",),  # process-level concerns; the root package `trainer` imports only these
    ("data",),
    ("training",),
    ("config",),
    ("logs",),
    ("storage",),
    ("ensemble",),
    ("sweeps",),
    ("vectorized",),
    ("report", "landscape"),
    ("run", "eval", "api", "__main__"),  # the entry points, and `from trainer import Trainer`
]

# Imports allowed to run up a layer, each with why and until when: none. A new upward import fails
# the test; an entry whose import is gone fails it too (delete the entry).
ALLOWED: dict[tuple[str, str], str] = {}


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("trainer", cache_dir=None)


def layer_of(module: str) -> int:
    """The layer of a module of trainer: its subpackage's or entry point's; the root package counts as
    an entry point (its lazy `Trainer`), its import-time imports are checked on their own."""
    if module == "trainer":
        return len(LAYERS) - 1
    part = module.split(".")[1]
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    raise AssertionError(f"{module} is in no layer: add `{part}` to LAYERS in {__file__} and to the "
                         "Layers section of docs/architecture.md")


def edges() -> dict[tuple[str, str], str]:
    """Every import between two modules of trainer, with where it stands (`line N: code`)."""
    g, out = graph(), {}
    for importer in g.modules:
        for imported in g.find_modules_directly_imported_by(importer):
            details = g.get_import_details(importer=importer, imported=imported)
            out[(importer, imported)] = "; ".join(f"line {d['line_number']}: {d['line_contents']}"
                                                  for d in details)
    return out


def cycles(links: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    after: dict[str, list[str]] = {}
    for a, b in sorted(links):
        after.setdefault(a, []).append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in after.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(after):
        if v not in index:
            visit(v)
    return found


def listed(pairs: list[tuple[str, str]], where: dict[tuple[str, str], str]) -> str:
    return "\n".join(f"  {a} -> {b}   ({where[(a, b)]})" for a, b in pairs)


def shortest_loop(component: list[str], links: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """One shortest chain of imports that leads from a module of `component` back to it (breadth first)."""
    after: dict[str, list[str]] = {}
    for a, b in sorted(links):
        if a in component and b in component:
            after.setdefault(a, []).append(b)
    best: list[tuple[str, str]] = []
    for start in component:
        came: dict[str, str] = {}  # module -> the module it was first reached from
        frontier = [start]
        while start not in came:  # in a component every module leads back to every other
            reached = []
            for a in frontier:
                for b in after.get(a, []):
                    if b not in came:
                        came[b] = a
                        reached.append(b)
            frontier = reached
        chain = [(came[start], start)]
        while chain[0][0] != start:
            chain.insert(0, (came[chain[0][0]], chain[0][0]))
        best = chain if not best or len(chain) < len(best) else best
    return best


def test_no_import_cycles():
    where = edges()
    links = set(where) - set(ALLOWED)
    loops = [shortest_loop(c, links) for c in cycles(links)]
    assert not loops, "import cycles in trainer/ (break each: move what both sides need down a layer, " \
        "or pass it in); one loop of each:\n" + "\n".join(listed(loop, where) + "\n" for loop in loops)


def test_no_import_runs_up_a_layer():
    where = edges()
    upward = [(a, b) for (a, b) in where if layer_of(b) > layer_of(a) and (a, b) not in ALLOWED]
    assert not upward, ("imports from a lower layer to a higher one (the order is LAYERS in this file "
                        "and docs/architecture.md; move what is shared down, or pass it in):\n"
                        + listed(sorted(upward), where))


def test_allowed_exceptions_still_exist():
    gone = [f"  {a} -> {b}  ({why})" for (a, b), why in ALLOWED.items() if (a, b) not in edges()]
    assert not gone, ("these imports are gone: delete them from ALLOWED in tests/unit/test_architecture.py:\n"
                      + "\n".join(gone))


def test_nothing_imports_the_root_package():
    importers = sorted(graph().find_modules_that_directly_import("trainer"))
    assert not importers, f"these modules import the root package `trainer`: {importers}; import " \
        "the module that holds what they need (trainer.runtime.startup: __version__, the wait policy)"


@pytest.mark.slow  # a fresh interpreter
def test_import_trainer_registers_every_resolver_the_configs_name(tmp_path):
    """Every process imports the root package first (a joblib or submitit worker too): that alone
    registers the resolvers, before Hydra composes or resolves a config."""
    named = {m for path in (ROOT / "configs").rglob("*.yaml")
             for m in re.findall(r"\$\{([a-z_][\w.]*):", path.read_text())}
    ours = sorted(n for n in named if n not in ("now", "hydra") and not n.startswith("oc."))  # not Hydra's
    code = ("import trainer\nfrom omegaconf import OmegaConf\n"
            f"print([n for n in {ours} if not OmegaConf.has_resolver(n)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert "run_id" in ours and out.stdout.strip() == "[]", \
        f"not registered by `import trainer`: {out.stdout}{out.stderr}"


def top_level_imports(path: Path) -> list[str]:
    """The modules that a file imports when it is imported (not inside a function)."""
    tree = ast.parse(path.read_text())
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def test_the_root_package_imports_only_the_bottom_layer():
    imported = [m for m in top_level_imports(PACKAGE / "__init__.py") if m != "__future__"]
    wrong = [m for m in imported if not m.startswith("trainer.runtime.")]
    assert not wrong, f"trainer/__init__.py imports {wrong}: every `import trainer.X` runs it first, " \
        "so it may import only trainer.runtime modules (the wait policy, the version, the resolvers)"


def test_subpackage_inits_say_what_lives_there_and_import_nothing():
    problems = []
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        name = init.parent.name
        doc = ast.get_docstring(ast.parse(init.read_text()), clean=True)
        if not doc:
            problems.append(f"{name}/__init__.py has no docstring: say in 2-3 lines what lives there")
        elif len(doc.splitlines()) > 3:
            problems.append(f"{name}/__init__.py's docstring is {len(doc.splitlines())} lines: at most 3")
        heavy = [m for m in top_level_imports(init)
                 if m != "__future__" and m.split(".")[0] not in sys.stdlib_module_names]
        if heavy:
            problems.append(f"{name}/__init__.py imports {heavy} when the package is imported: import "
                            "the modules where they are used, or load names on first use (`__getattr__`)")
    assert not problems, "\n".join(problems)


def test_the_architecture_doc_lists_these_layers():
    section = (ROOT / "docs" / "architecture.md").read_text().split("## Layers", 1)[-1]
    items = re.findall(r"^\d+\. (.*)$", section, flags=re.M)
    written = [tuple(re.findall(r"`(\w+)(?:/|\.py)`", item)) for item in items]  # `data/`, `run.py`
    assert written == LAYERS, f"docs/architecture.md (Layers) lists {written}; this test's LAYERS: {LAYERS}"

