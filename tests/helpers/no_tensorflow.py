"""Python source that makes TensorFlow (and TensorBoard) unimportable, as on the GPU machine.

Prepend it to a ``python -c`` script, or write it as ``sitecustomize.py`` into a folder on
``PYTHONPATH`` (:func:`sitecustomize_dir`) so that every subprocess gets it. Module names stay
out of ``sys.modules`` (unlike ``sys.modules["tensorflow"] = None``, which Keras would take for
an imported TensorFlow).
"""
from pathlib import Path

SOURCE = """
import sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorboard"):
            raise ModuleNotFoundError("No module named " + repr(name))

sys.meta_path.insert(0, NoTensorFlow())
"""


def sitecustomize_dir(folder: Path) -> Path:
    """``folder`` holding a ``sitecustomize.py`` with :data:`SOURCE` (put it on PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SOURCE)
    return folder
