"""training/openmp.py: a short OpenMP spin by default; whatever the user set wins."""

from __future__ import annotations

import os

import pytest

from training.openmp import SPIN_COUNT, configure_openmp_waiting


def test_sets_a_short_spin_when_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    configure_openmp_waiting()

    assert os.environ["GOMP_SPINCOUNT"] == SPIN_COUNT


def test_the_users_choice_wins(monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    configure_openmp_waiting()
    assert "GOMP_SPINCOUNT" not in os.environ
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "5")
    configure_openmp_waiting()
    assert os.environ["GOMP_SPINCOUNT"] == "5"
