"""``python -m training``: the same command line as ``cxrlab``, without loading TensorFlow."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_python_dash_m_training_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "training", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "train" in done.stdout and "evaluate" in done.stdout


def test_an_unknown_command_exits_with_an_error():
    done = subprocess.run([sys.executable, "-m", "training", "no-such-command"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "no-such-command" in done.stderr
