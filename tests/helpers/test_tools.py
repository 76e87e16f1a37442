"""tests/helpers/tools.py: a missing tool skips the test locally and fails it under CI=true."""
from __future__ import annotations

import pytest

from tests.helpers import tools

MISSING = "cxrlab-no-such-tool"


@pytest.mark.parametrize(("value", "ci"), [("true", True), ("TRUE", True), ("1", True), ("yes", True),
                                           ("", False), ("false", False), ("0", False)])
def test_in_ci_reads_the_ci_variable(monkeypatch, value, ci):
    monkeypatch.setenv("CI", value)
    assert tools.in_ci() is ci


def test_missing_tool_is_a_skip_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"{MISSING} is not installed \\(apt-get install x\\)"):
        tools.require_tool(MISSING, "apt-get install x")


def test_missing_tool_is_a_failure_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"CI=true and {MISSING} is not installed"):
        tools.require_tool(MISSING, "apt-get install x")


def test_unavailable_says_why(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no engine here"):
        tools.unavailable("no engine here")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="no engine here"):
        tools.unavailable("no engine here")


def test_present_tool_returns_its_path(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert tools.require_tool("sh", "always there").endswith("/sh")


def test_sbin_tools_are_found_off_the_path(monkeypatch):
    """dockerd and debootstrap live in /usr/sbin, often not on a user's PATH."""
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    monkeypatch.setattr(tools.os, "access", lambda path, mode: path == "/usr/sbin/dockerd")
    assert tools.require_tool("dockerd", "apt-get install docker.io") == "/usr/sbin/dockerd"
