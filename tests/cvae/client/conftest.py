"""Every client test runs on both clients: the `kind` fixture (see drivers.py)."""

from __future__ import annotations

import pytest

from tests.cvae.client.drivers import KINDS


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Which client a test drives: "sync" (`Client`) or "asyncio" (`AsyncClient`)."""
    return str(request.param)
