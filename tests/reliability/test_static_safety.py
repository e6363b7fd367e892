"""What the code may load, read from its syntax trees: the service never unpickles (ONNX and JSON
only), training calls torch.load only with weights_only=True, and every dependency is pinned."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
# Modules whose loaders can run arbitrary code from the data they read.
_UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal",
               "torch", "yaml"}  # fmt: skip
_LOADERS = {"load", "loads", "Unpickler"}


def _dotted(node: ast.expr) -> str:
    """`np.load` -> "np.load", `a.b.c` -> "a.b.c"; anything else -> ""."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _keyword_is_true(call: ast.Call, name: str) -> bool:
    return any(
        k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in call.keywords
    )


def unsafe_loads(source: str, filename: str) -> list[str]:
    """Each import of an unpickling module and each call that could unpickle: `file:line what`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names]
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else names
            for module in modules:
                if module.split(".")[0] in _UNPICKLERS:
                    found.append(f"{filename}:{node.lineno} imports {module}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name.split(".")[-1] in _LOADERS and name.split(".")[0] in {"np", "numpy"}:
                if not any(
                    k.arg == "allow_pickle"
                    and isinstance(k.value, ast.Constant)
                    and k.value.value is False
                    for k in node.keywords
                ):
                    found.append(
                        f"{filename}:{node.lineno} calls {name} without allow_pickle=False"
                    )
            elif name.split(".")[0] in _UNPICKLERS and name.split(".")[-1] in _LOADERS:
                found.append(f"{filename}:{node.lineno} calls {name}")
    return found


def torch_loads(source: str, filename: str) -> tuple[int, list[str]]:
    """(number of torch.load calls, those without weights_only=True as `file:line`)."""
    tree = ast.parse(source, filename)
    aliases = {"torch.load"}
    for node in ast.walk(tree):  # `from torch import load [as x]`
        if isinstance(node, ast.ImportFrom) and node.module == "torch":
            aliases |= {alias.asname or alias.name for alias in node.names if alias.name == "load"}
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _dotted(node.func) in aliases
    ]
    unsafe = [f"{filename}:{c.lineno}" for c in calls if not _keyword_is_true(c, "weights_only")]
    return len(calls), unsafe


def _python_files(package: str) -> list[Path]:
    files = sorted((_ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return files


def test_the_scanners_catch_what_they_look_for() -> None:
    bad = (
        "import pickle\nfrom joblib import load\nimport numpy as np\n"
        "np.load('x.npy')\nnp.load('y.npy', allow_pickle=True)\npickle.loads(b'')\n"
    )
    assert len(unsafe_loads(bad, "bad.py")) == 5
    assert unsafe_loads("import numpy as np\nnp.load('x', allow_pickle=False)\n", "ok.py") == []
    calls = (
        "import torch\nfrom torch import load as tl\ntorch.load('a')\ntl('b', weights_only=True)\n"
    )
    assert torch_loads(calls, "t.py") == (2, ["t.py:3"])
    assert torch_loads("torch.load('a', weights_only=False)\n", "f.py") == (1, ["f.py:1"])


def test_the_service_never_unpickles() -> None:
    found = [
        hit
        for path in _python_files("service")
        for hit in unsafe_loads(path.read_text(), str(path.relative_to(_ROOT)))
    ]
    assert found == [], "the service must load only ONNX and JSON"


def test_training_loads_checkpoints_with_weights_only() -> None:
    total, unsafe = 0, list[str]()
    for path in _python_files("training"):
        count, bad = torch_loads(path.read_text(), str(path.relative_to(_ROOT)))
        total, unsafe = total + count, unsafe + bad
    assert total >= 1, "expected the checkpoint loader's torch.load call"
    assert unsafe == [], "torch.load must pass weights_only=True (no arbitrary unpickling)"


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def test_every_dependency_has_an_exact_pin_in_constraints() -> None:
    project = tomllib.loads((_ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra}
    wanted.discard(_name(project["name"]))  # the extras refer to the project itself
    pinned = {}
    for line in (_ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version and re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version.strip()), line
            pinned[_name(name)] = version.strip()
    assert len(wanted) >= 15
    assert sorted(wanted - set(pinned)) == [], "dependencies without an exact pin"
