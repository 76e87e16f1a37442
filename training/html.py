"""The one way the training package writes HTML: Jinja2 template files in ``training/templates``.

Autoescaped, strict (an undefined name is an error, not an empty cell); the ``num`` filter
prints a number as the JSON holds it (:func:`fmt`).
"""
from __future__ import annotations

from typing import Any

import jinja2

DECIMALS = 4  # the JSON's rounding (evaluation.evaluate.rounded) and the HTML's


def fmt(v: Any) -> str:
    """A number as the report prints it (the JSON value, fixed decimals; n/a for null)."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{DECIMALS}f}"
    return str(v)  # the template escapes


_ENV = jinja2.Environment(loader=jinja2.PackageLoader("training", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_ENV.filters["num"] = fmt


def render(template: str, **context: Any) -> str:
    """``training/templates/<template>`` rendered with ``context``."""
    return _ENV.get_template(template).render(**context)
