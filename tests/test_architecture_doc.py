"""docs/architecture.md matches the code: every module is named there, every name it gives
exists, and every module has its mirrored test file or names the test that covers it.

How the doc names a module: a path in backticks (`training/engine/fit.py`); a bare file name
after a path on the same line is in that path's folder (`training/evaluation/metrics.py`,
`bootstrap.py`); a package's `__init__.py` is named by its folder (`app/report/`). An
`__init__.py` holding only a docstring defines nothing and needs no entry.
"""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("training", "app")
_TOKEN = re.compile(r"`([^`\s]+)`")
_BARE = re.compile(r"[a-z0-9_]+\.py")


def _named(text: str) -> set[str]:
    """Every path the text names (see the module docstring for the rule)."""
    named: set[str] = set()
    for line in text.splitlines():
        folder = None
        for token in _TOKEN.findall(line):
            if token.startswith(tuple(f"{p}/" for p in PACKAGES + ("tests",))) and token.endswith((".py", "/")):
                named.add(token)
                folder = token if token.endswith("/") else token.rsplit("/", 1)[0] + "/"
            elif folder and _BARE.fullmatch(token):
                named.add(folder + token)
    return named


def _defines_something(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]  # the docstring
    return bool(body)


def _modules() -> list[str]:
    """Every module of the packages, as a path from the repository root."""
    files = sorted(f for p in PACKAGES for f in (ROOT / p).rglob("*.py"))
    return [f.relative_to(ROOT).as_posix() for f in files
            if f.name != "__init__.py" or _defines_something(f)]


def _section(text: str, title: str) -> str:
    """The body of the ``## title`` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/architecture.md has no '## {title}' section"
    return match.group(1)


def _is_named(module: str, named: set[str]) -> bool:
    if module.endswith("/__init__.py"):
        return module in named or module[:-len("__init__.py")] in named
    return module in named


def test_rule_reads_paths_bare_names_and_folders():
    line = "| `training/evaluation/metrics.py`, `bootstrap.py` | `app/report/` (`pdf.py`, `gate.npz`) |"
    assert _named(line) == {"training/evaluation/metrics.py", "training/evaluation/bootstrap.py",
                            "app/report/", "app/report/pdf.py"}
    assert _named("`bootstrap.py` alone names nothing") == set()


def test_every_module_is_in_the_architecture_doc():
    named = _named(DOC.read_text(encoding="utf-8"))
    modules = _modules()
    assert len(modules) > 50  # the packages were found
    missing = [m for m in modules if not _is_named(m, named)]
    assert not missing, ("modules missing from docs/architecture.md (add a line to 'Modules: one "
                         f"job each'): {missing}")


def test_every_path_the_doc_names_exists():
    stale = sorted(p for p in _named(DOC.read_text(encoding="utf-8")) if not (ROOT / p).exists())
    assert not stale, f"docs/architecture.md names paths that do not exist: {stale}"


def mirror_test(module: str) -> Path:
    """``training/x/y.py`` -> ``tests/training/x/test_y.py``."""
    path = Path(module)
    return ROOT / "tests" / path.parent / f"test_{path.stem}.py"


def test_every_module_has_a_test_file_or_names_the_test_that_covers_it():
    """No mirrored test file: the doc's 'Tests' section names the module and, on the same
    line, an existing test file that exercises it through its caller."""
    section = _section(DOC.read_text(encoding="utf-8"), "Tests")
    covered = set()
    for line in section.splitlines():
        named = _named(line)
        if any(p.startswith("tests/") and (ROOT / p).is_file() for p in named):
            covered |= named
    untested = [m for m in _modules() if (m.endswith("__init__.py") or not mirror_test(m).is_file())
                and not _is_named(m, covered)]
    assert not untested, ("modules with neither tests/<same path>/test_<name>.py nor a line in "
                          f"docs/architecture.md's 'Tests' section naming their test: {untested}")
