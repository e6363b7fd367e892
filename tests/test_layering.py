"""The seams between packages hold: serving never needs torch, training never needs grpc, and the
model repository contract they share needs nothing but the standard library."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parent.parent


def _run_with_blocked_imports(blocked: list[str], code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter where importing any of `blocked` raises ImportError."""
    guard = textwrap.dedent(
        f"""
        import importlib.abc, sys
        _BLOCKED = {blocked!r}
        class _Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in _BLOCKED:
                    raise ImportError(f"blocked import of {{name}}")
                return None
        sys.meta_path.insert(0, _Block())
        """
    )
    return subprocess.run(
        [sys.executable, "-c", guard + code],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _modules_of(package: str) -> list[str]:
    return sorted(
        ".".join(path.relative_to(_ROOT).with_suffix("").parts)
        for path in (_ROOT / package).rglob("*.py")
        if path.name != "__main__.py"
    )


@pytest.mark.parametrize("package", ["service", "cvae"])
def test_serving_side_imports_without_torch_training_or_export(package: str) -> None:
    modules = _modules_of(package)
    assert modules, f"no modules found under {package}/"
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    result = _run_with_blocked_imports(["torch", "training", "export", "onnx"], code)
    assert result.returncode == 0, result.stderr


def test_model_repository_package_needs_the_standard_library_only() -> None:
    """modelrepo is shared by service, export, training and bench, so it may import none."""
    modules = _modules_of("modelrepo")
    assert modules, "no modules found under modelrepo/"
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    blocked = ["torch", "onnx", "onnxruntime", "numpy", "grpc", "service", "training", "export"]
    result = _run_with_blocked_imports([*blocked, "cvae", "bench"], code)
    assert result.returncode == 0, result.stderr


def test_training_imports_without_grpc_or_service() -> None:
    modules = [m for m in _modules_of("training") if not m.endswith(".cli")]
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    result = _run_with_blocked_imports(["grpc", "service", "cvae"], code)
    assert result.returncode == 0, result.stderr


def test_cli_help_starts_without_torch() -> None:
    for command in ("serve", "generate", "train", "evaluate", "export"):
        result = _run_with_blocked_imports(
            ["torch", "onnx"], f"from cvae.cli import main\nmain([{command!r}, '--help'])"
        )
        # argparse exits 0 after printing help
        assert result.returncode == 0, (command, result.stderr)
        assert "usage: cvae" in result.stdout
