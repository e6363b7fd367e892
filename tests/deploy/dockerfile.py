"""Read deploy/Dockerfile as stages of instructions, with dockerfile-parse."""

from __future__ import annotations

import functools
import json
import re
import shlex
from dataclasses import dataclass, field

from dockerfile_parse import DockerfileParser

from tests.deploy.manifests import ROOT

DOCKERFILE = ROOT / "deploy" / "Dockerfile"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for name, value in self.instructions if name == instruction]

    def env(self) -> dict[str, str]:
        """ENV pairs of this stage (KEY=VALUE form), later ones winning."""
        pairs: dict[str, str] = {}
        for value in self.values("ENV"):
            for item in shlex.split(value):
                key, _, val = item.partition("=")
                pairs[key] = val
        return pairs

    def exec_form(self, instruction: str) -> list[str]:
        """The last ENTRYPOINT or CMD, which must be in exec (JSON) form."""
        (*_, value) = self.values(instruction)
        parsed = json.loads(value)
        assert isinstance(parsed, list), f"{instruction} is not in exec form: {value}"
        return [str(item) for item in parsed]

    def copies(self) -> list[tuple[str | None, list[str], str]]:
        """(from-stage or None, sources, destination) for each COPY."""
        result = []
        for value in self.values("COPY"):
            words = shlex.split(value)
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            source_stage = next(
                (f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None
            )
            result.append((source_stage, paths[:-1], paths[-1]))
        return result


@functools.cache
def stages() -> dict[str, Stage]:
    parser = DockerfileParser(path=str(DOCKERFILE))
    build_args = _global_args(parser)
    result: dict[str, Stage] = {}
    current: Stage | None = None
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", value, flags=re.IGNORECASE)
            assert match, f"every stage needs a name: FROM {value}"
            base = re.sub(r"\$\{(\w+)\}", lambda m: build_args[m[1]], match[1])
            current = Stage(name=match[2], base=base)
            result[current.name] = current
        elif current is not None and instruction != "COMMENT":
            current.instructions.append((instruction, value))
    return result


def last_stage() -> Stage:
    return list(stages().values())[-1]


def _global_args(parser: DockerfileParser) -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults."""
    args: dict[str, str] = {}
    for item in parser.structure:
        if item["instruction"] == "FROM":
            break
        if item["instruction"] == "ARG":
            key, _, default = item["value"].partition("=")
            args[key] = default
    return args
