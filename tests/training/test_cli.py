"""training/cli.py: `cvae train --help` needs no torch; bad settings and resumes are refused."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cvae.cli import main

_ROOT = Path(__file__).resolve().parents[2]


def test_train_help_works_where_torch_cannot_be_imported() -> None:
    code = textwrap.dedent(
        """
        import builtins, sys
        real_import = builtins.__import__
        def guarded(name, *args, **kwargs):
            if name.split(".")[0] == "torch":
                raise ImportError("torch is blocked in this test")
            return real_import(name, *args, **kwargs)
        builtins.__import__ = guarded
        from cvae.cli import main
        try:
            main(["train", "--help"])
        except SystemExit as exit:
            assert exit.code == 0, exit.code
        assert "torch" not in sys.modules
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--latent-dim" in result.stdout and "--resume" in result.stdout


def test_resume_without_a_previous_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="nothing to resume"):
        main(["train", "--out", str(tmp_path), "--resume"])


def test_resume_with_new_settings_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="saved configuration"):
        main(["train", "--out", str(tmp_path), "--resume", "--epochs", "3"])


def test_invalid_setting_is_refused_with_its_reason(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="epochs must be positive"):
        main(["train", "--out", str(tmp_path), "--epochs", "0"])


def test_auto_resume_continues_a_run_and_refuses_another_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--auto-resume, for jobs that get restarted: start when there is no last.pt, else go on."""
    tiny = [
        "train", "--out", str(tmp_path), "--latent-dim", "4", "--encoder-channels", "4,8",
        "--encoder-hidden", "16", "--decoder-channels", "8,4,4", "--train-subset", "256",
        "--valid-subset", "128", "--batch-size", "64", "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    assert main([*tiny, "--epochs", "1", "--auto-resume"]) == 0
    first = (tmp_path / "last.pt").read_bytes()
    assert main([*tiny, "--epochs", "1", "--auto-resume"]) == 0  # done already: trains nothing
    assert (tmp_path / "last.pt").read_bytes() == first
    with pytest.raises(SystemExit, match="another configuration"):
        main([*tiny, "--epochs", "2", "--auto-resume"])
    capsys.readouterr()
