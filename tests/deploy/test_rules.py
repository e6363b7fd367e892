"""`promtool test rules` runs the unit tests of every recording rule and alert
(tests/deploy/rules/cvae-rules.test.yaml), and every rule has at least one."""

from __future__ import annotations

import subprocess

import yaml

from tests.deploy.manifests import ROOT
from tests.tools import require

RULES = ROOT / "deploy" / "monitoring" / "cvae-rules.yaml"
RULE_TESTS = ROOT / "tests" / "deploy" / "rules" / "cvae-rules.test.yaml"


def _rules() -> list[dict]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def test_promtool_checks_the_rules() -> None:
    run = subprocess.run(
        [require("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    run = subprocess.run(
        [require("promtool"), "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        cwd=RULE_TESTS.parent,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_every_alert_and_recording_rule_has_a_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested_alerts = {t["alertname"] for test in tests for t in test.get("alert_rule_test", [])}
    tested_records = {t["expr"] for test in tests for t in test.get("promql_expr_test", [])}
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    records = {rule["record"] for rule in _rules() if "record" in rule}
    assert alerts - tested_alerts == set()
    assert records - tested_records == set()
    # Each alert is seen both silent and firing somewhere.
    for alert in alerts:
        outcomes = {
            bool(t["exp_alerts"])
            for test in tests
            for t in test.get("alert_rule_test", [])
            if t["alertname"] == alert
        }
        assert outcomes == {False, True}, alert
