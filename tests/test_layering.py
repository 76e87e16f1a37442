"""The import graph of `training` and `app`: no cycles, and each layer imports only below it.

Every import counts, function-level ones too (a function-level import hides a cycle, it does
not remove it). A module importing its own package (``from app import state``) is not an
edge: Python imports the parent first anyway.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Lowest first; a package may import its own layer and the ones before it.
LAYERS = [
    {"training.errors", "training.io", "training.html",
     "training.demo_status"},  # the demo's progress record: written by the demo, read by the app
    {"training.pixels", "training.dicom"},  # the pixel budget and helpers; reading DICOM safely
    {"training.preprocess"},
    {"training.gate"},  # the input gate: image checks and OOD scoring (its fitting: gate.fit, below)
    {"training.data"},
    # the card's pure records defined beside their writers in higher packages
    {"training.evaluation.records", "training.evaluation.estimate", "training.clinical.records",
     "training.evaluation.thresholds",  # thresholds: the card's record, beside its one writer
     "training.evaluation.evidence"},  # transfer evidence: the card's record, read by the app
    {"training.models",
     "training.clinical.encoder"},  # a card's clinical-input encoder: the runtime encodes with it
    {"training.config"},
    {"training.evaluation",  # the metric functions the trainer reports validation with
     "training.runtime"},  # one saved model, loaded and used (calibration, decision, gate)
    {"training.engine", "training.explain",
     "training.gate.fit",  # fitting a model's gate runs the engine's feature extraction
     "training.evaluation.gallery",  # compare's gallery draws each model's Grad-CAM
     "training.evaluation.compare"},  # writes that gallery
    {"training.audits", "training.clinical", "training.semi", "training.pretrain",
     "training.evaluation.cross_collection",  # trains a model per fold: built on the trainer
     "training.evaluation.cross_site",  # the same, one site held out per fold
     "training.lungs"},  # lung segmentation and derived datasets: reads the audits' lung masks
    {"training.demo", "training.demo_progress", "training.demo_server"},  # its progress lines; its app child
    {"training.cli", "training.commands", "training.flags", "training.__main__",
     "training.commands_base", "training.commands_eval"},  # commands.py split to stay small
    {"app"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in ("training", "app"):
        for f in (ROOT / pkg).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``name`` imports anywhere in its file."""
    def known(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {known(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
            found |= {known(f"{base}.{a.name}") for a in node.names}
    return {t for t in found if t and t != name and not name.startswith(t + ".")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layer(module: str) -> int:
    if module == "training":  # the package's __init__ (its version): below everything
        return 0
    # The longest listed prefix decides: a module may sit above the rest of its package.
    matches = [(len(n), i) for i, names in enumerate(LAYERS) for n in names
               if module == n or module.startswith(n + ".")]
    if not matches:
        raise AssertionError(f"{module} is in no layer of tests/test_layering.py: add it")
    return max(matches)[1]


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def test_packages_import_only_their_layer_or_below(graph):
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets
                    if _layer(t) > _layer(m))
    assert upward == []


def test_the_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
