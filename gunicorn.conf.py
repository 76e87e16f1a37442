"""gunicorn settings for ``gunicorn -c gunicorn.conf.py wsgi:app``: exactly those of
``app/gunicorn_conf.py``, which ``cxrlab serve`` uses where cxrlab is installed (read afresh
here, so the ``CXRLAB_*`` variables of this process apply)."""
import runpy
from pathlib import Path

globals().update({k: v for k, v in runpy.run_path(str(Path(__file__).parent / "app" / "gunicorn_conf.py")).items()
                  if not k.startswith("__")})
