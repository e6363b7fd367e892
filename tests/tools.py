"""Programs some tests need beyond Python (promtool, prometheus, node): found, or a failure that
says what is missing and how to get it. Never a skip: `.ci/run` installs them, and a test that
cannot run must not pass silently."""

from __future__ import annotations

import shutil

import pytest

# What provides each program on Debian bookworm (what .ci/run installs).
INSTALL = {
    "promtool": "apt-get install -y prometheus (Debian's package has prometheus and promtool)",
    "prometheus": "apt-get install -y prometheus (Debian's package has prometheus and promtool)",
    "node": "apt-get install -y nodejs npm (Node 20 or newer)",
    "npm": "apt-get install -y nodejs npm (Node 20 or newer)",
}


def require(program: str) -> str:
    """The path of `program`, or fail the test naming the package to install."""
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is not installed: {INSTALL[program]}; .ci/run installs it", False)
    return path
