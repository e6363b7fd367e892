"""The series selectors inside PromQL expressions, found with a real PromQL parser."""

from __future__ import annotations

import re
from dataclasses import dataclass

import promql_parser

# Grafana's variables, replaced by values of the right kind before parsing.
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>\w+)\)$")


@dataclass(frozen=True)
class Matcher:
    label: str
    operator: str  # "=", "!=", "=~", "!~"
    value: str


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...]


_OPERATORS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def selectors(expression: str) -> list[Selector]:
    """Every vector selector of `expression` (raises ValueError when it does not parse)."""
    found: list[Selector] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = tuple(
                Matcher(m.name, _OPERATORS[str(m.op).rsplit(".", 1)[-1]], m.value)
                for m in node.matchers.matchers
                if m.name != "__name__"
            )
            assert node.name, f"a selector without a metric name in {expression!r}"
            found.append(Selector(node.name, matchers))

    promql_parser.walk(promql_parser.parse(expression), visit)
    return found


def grafana_selectors(expression: str) -> list[Selector]:
    """As `selectors`, for a Grafana query: variables substituted, label_values() unwrapped."""
    text = expression.strip()
    for variable, value in _GRAFANA_VARIABLES.items():
        text = text.replace(variable, value)
    text = re.sub(r"\$\{?(\w+)\}?", r"grafana_variable_\1", text)
    match = _LABEL_VALUES.match(text)
    if match:
        text = match["selector"]
    return selectors(text)
