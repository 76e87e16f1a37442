"""Small modules: no file of ``training/`` or ``app/`` over 400 lines (split it by concept)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def test_no_module_over_400_lines():
    sizes = {f.relative_to(ROOT).as_posix(): len(f.read_text(encoding="utf-8").splitlines())
             for pkg in ("training", "app") for f in sorted((ROOT / pkg).rglob("*.py"))}
    assert len(sizes) > 50  # the packages were found
    over = {path: n for path, n in sizes.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines (split them by concept): {over}"
