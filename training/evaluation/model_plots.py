"""A model's evaluation plots kept in its own folder, for its card page.

``evaluate`` writes its figures to its output folder (anywhere); it also copies them to
``<model_dir>/evaluation/<part>/`` (:func:`keep_plots`), so the model carries them and the app
serves them from there (:func:`plot_files`, :func:`plot_file`): only small images of an
allow-listed type, by bare file name, never a path out of that folder. No third-party imports:
the web app reads this without the evaluation stack.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Iterable

PLOTS_DIR = "evaluation"
EXTENSIONS = (".png", ".svg")
MAX_BYTES = 2_000_000  # a figure is far smaller; anything bigger is not copied or served
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a bare file or part name


def figure_names(figures: dict[str, Any]) -> list[str]:
    """The file names of ``evaluate``'s ``figures`` (values: a name or a list of names)."""
    out: list[str] = []
    for value in figures.values():
        out += [str(v) for v in (value if isinstance(value, list) else [value])]
    return out


def _plot(folder: Path, name: str) -> Path | None:
    """``folder/name`` when ``name`` is a bare, allow-listed plot file that is there."""
    if not _NAME.match(name) or Path(name).suffix.lower() not in EXTENSIONS:
        return None
    path = folder / name
    ok = path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_BYTES
    return path if ok else None


def keep_plots(names: Iterable[str], src: str | Path, model_dir: str | Path, part: str) -> Path:
    """Copy the plots ``names`` from ``src`` into ``<model_dir>/evaluation/<part>/`` (its
    earlier plots removed: a re-run never leaves a stale figure). Returns that folder."""
    if not _NAME.match(part):
        raise ValueError(f"part {part!r} is not a plain name (letters, digits, _ . -)")
    dest = Path(model_dir) / PLOTS_DIR / part
    if dest.is_dir():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in names:
        path = _plot(Path(src), name)
        if path is not None:
            shutil.copyfile(path, dest / name)
    return dest


def plot_files(model_dir: str | Path) -> dict[str, list[str]]:
    """Per evaluated part (sorted), the plot files kept for it (sorted)."""
    root = Path(model_dir) / PLOTS_DIR
    if not root.is_dir():
        return {}
    out = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)):
        names = sorted(f.name for f in folder.iterdir() if _plot(folder, f.name) is not None)
        if names:
            out[folder.name] = names
    return out


def plot_file(model_dir: str | Path, part: str, name: str) -> Path | None:
    """The kept plot ``part/name`` of the model, or None (unknown, not a plot, or a path)."""
    if not _NAME.match(part):
        return None
    return _plot(Path(model_dir) / PLOTS_DIR / part, name)
