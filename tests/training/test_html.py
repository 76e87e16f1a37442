"""The one HTML writer: autoescaped, strict templates; numbers printed as the JSON holds them."""
import jinja2
import pytest

from training.html import DECIMALS, fmt, render


def test_fmt_prints_numbers_as_the_json_holds_them():
    assert fmt(None) == "n/a"
    assert fmt(0.123456789) == "0.1235" and DECIMALS == 4
    assert fmt(3) == "3" and fmt("<b>") == "<b>"  # text: the template escapes it


def _check_page(**changes):
    context = dict(title="T", summary=["one"], header=["h"], rows=[[0.5]], disclaimer="d")
    return render("check.html", **{**context, **changes})


def test_render_escapes_values():
    page = _check_page(title="<script>x</script>", rows=[["a & b"]])
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "a &amp; b" in page


def test_a_missing_value_is_an_error_not_an_empty_cell():
    with pytest.raises(jinja2.UndefinedError, match="disclaimer"):
        render("check.html", title="T", summary=[], header=[], rows=[])
    assert "<small>d</small>" in _check_page()
