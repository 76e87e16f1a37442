"""`pip install .` gives a working `cxrlab` command and an app that finds its templates.

The wheel is built from the checkout and installed, without dependencies, into a fresh venv
whose only view of the dependencies is a path file to this interpreter's site-packages; every
command then runs outside the checkout, so nothing can come from the source tree.
"""
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, cwd, timeout=300):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", ROOT], tmp)
    wheel = next((tmp / "dist").glob("cxrlab-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp)
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp).strip())
    (site / "cxrlab_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "-q", wheel], tmp)
    return venv, site, tmp


def test_cxrlab_help_after_install(installed):
    venv, site, tmp = installed
    out = _run([venv / "bin" / "cxrlab", "--help"], tmp)
    for command in ("train", "evaluate", "demo", "serve", "pretrain"):
        assert command in out
    assert "research tool" in _run([venv / "bin" / "cxrlab", "serve", "--help"], tmp)


def test_installed_packages_are_used_with_their_templates(installed):
    venv, site, tmp = installed
    code = ("import training, app; from app import asset_dir; "
            "print(training.__file__); print(asset_dir('templates')); print(asset_dir('static'))")
    module, templates, static = _run([venv / "bin" / "python", "-c", code], tmp).split()
    assert Path(module).is_relative_to(site) and Path(templates).is_relative_to(site)
    assert (Path(templates) / "index.html").is_file() and (Path(static) / "style.css").is_file()
    assert (site / "app" / "gunicorn_conf.py").is_file()
    assert (site / "training" / "templates" / "evaluation.html").is_file()  # the reports' templates


def test_every_package_of_the_checkout_is_installed():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    present = {".".join(p.parent.relative_to(ROOT).parts) for pkg in ("training", "app")
               for p in (ROOT / pkg).rglob("__init__.py")}
    assert present <= listed, f"add {sorted(present - listed)} to pyproject.toml"
