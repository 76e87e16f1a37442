"""cxrlab web app: upload a chest X-ray, compare every trained model side by side.

A research tool, not a diagnostic device. Start with ``gunicorn -c gunicorn.conf.py wsgi:app``
(or ``flask --app app run`` for development); settings come from ``CXRLAB_*`` variables.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from app import config as app_config
from app.config import DISCLAIMER, DISCLAIMER_DETAIL  # noqa: F401  (app.DISCLAIMER: re-exported)


csrf = CSRFProtect()
log = logging.getLogger(__name__)


def asset_dir(name: str) -> str:
    """``templates``/``static``: inside the installed package (``pip install .`` puts them in
    ``app/``), else the checkout's top-level folder of that name."""
    here = Path(__file__).resolve().parent
    installed = here / name
    return str(installed if installed.is_dir() else here.parent / name)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The application factory: settings from the environment, overridden by ``config``.

    ``config["MODEL_BANK"]`` may hold an already loaded :class:`ModelBank` (tests);
    otherwise every model of ``MODELS_DIR`` is loaded now, once. A wrong setting
    (:class:`app.config.ConfigError`, ``CXRLAB_DEVICE=gpu`` without a GPU) stops start-up.
    """
    # Imported here, not at the top: `import app` (gunicorn's config, healthcheck, app.config)
    # must not load TensorFlow, which the model bank and the blueprints bring in.
    from app import api, audit, errors, model_watch, security, state, views
    from app.device import require_device
    from app.limiter import InflightLimiter
    from app.model_bank import ModelBank
    from app.uploads import InMemoryRequest

    app = Flask(__name__, template_folder=asset_dir("templates"), static_folder=asset_dir("static"))
    app.request_class = InMemoryRequest
    app.config.update(app_config.from_env())
    app.config.update(config or {})
    bank, watch = app.config.get("MODEL_BANK"), None
    if bank is None and app.config["TRAINING_STATUS"]:  # a demo still training: models as they finish
        watch = model_watch.ModelWatch(app.config["MODELS_DIR"], app.config["TRAINING_STATUS"],
                                       device=app.config["DEVICE"], warmup=app.config["WARMUP"])
        watch.sync()
        bank = watch.bank
    elif bank is None:   # from_dir configures CXRLAB_DEVICE (and refuses gpu without a GPU)
        bank = ModelBank.from_dir(app.config["MODELS_DIR"], device=app.config["DEVICE"],
                                  warmup=app.config["WARMUP"])
    else:              # a bank loaded by the caller: the setting must still hold
        require_device(app.config["DEVICE"])
    if not len(bank) and watch is None:
        log.warning("no models loaded from %s: train some with `make demo` or "
                    "`python -m training train-all`", app.config["MODELS_DIR"])
    app.extensions["cxrlab"] = {"limiter": InflightLimiter(int(app.config["MAX_INFLIGHT"])), "watch": watch}
    state.install_bank(app.extensions["cxrlab"], bank)
    csrf.init_app(app)
    csrf.exempt(api.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    errors.init_app(app)
    security.init_app(app)
    audit.init_app(app)
    app.jinja_env.globals["disclaimer_detail"] = DISCLAIMER_DETAIL
    model_watch.init_app(app)
    return app
