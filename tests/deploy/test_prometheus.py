"""A real Prometheus (Debian's 2.42) scrapes real servers under traffic, with the rules loaded;
every dashboard expression and variable is queried through its HTTP API and answers.

Two servers on the shipped repository (two loaded versions each): one process, and one with
`--workers 2`. Each is scraped twice: as a Kubernetes pod would be (namespace and pod labels)
and as a plain target without them (job "plain"), which the dashboard must also select.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from cvae.v1 import generator_pb2 as pb
from modelrepo import ModelRepository, newest_spec
from tests.deploy.manifests import ROOT
from tests.deploy.models import DEFAULT_MODEL
from tests.deploy.test_monitoring import DASHBOARD, RULES, _panels
from tests.service.serverproc import ServerProcess, free_port
from tests.tools import require

pytestmark = pytest.mark.timeout(300)
_SCRAPE_S = 1
_WINDOW = "15s"  # what the dashboard's $__rate_interval becomes: several scrapes
_PODS = {"single": "cvae-0", "workers": "cvae-1"}


class Prometheus:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expression)
        assert data["resultType"] == "vector", data
        return data["result"]


def _config(folder: Path, targets: dict[str, ServerProcess]) -> Path:
    # The rules as shipped, evaluated every second instead of every 30 s (the test's only change).
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = f"{_SCRAPE_S}s"
    (folder / "rules.yaml").write_text(yaml.safe_dump(rules))
    pods = [
        {
            "targets": [f"127.0.0.1:{server.metrics_port}"],
            "labels": {"namespace": "prod", "pod": _PODS[name]},
        }
        for name, server in targets.items()
    ]
    plain = [{"targets": [f"127.0.0.1:{s.metrics_port}" for s in targets.values()]}]
    config = {
        "global": {"scrape_interval": f"{_SCRAPE_S}s", "evaluation_interval": f"{_SCRAPE_S}s"},
        "rule_files": [str(folder / "rules.yaml")],
        "scrape_configs": [
            {"job_name": "cvae", "static_configs": pods},
            {"job_name": "plain", "static_configs": plain},
        ],
    }
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _traffic(server: ServerProcess, stop: threading.Event) -> None:
    stub = server.stub
    seed = 0
    while not stop.is_set():
        seed += 1
        stub.Generate(pb.GenerateRequest(labels=[seed % 10] * 8, seed=seed), timeout=30)
        for _ in stub.GenerateStream(
            pb.GenerateRequest(labels=[1] * 64, chunk_size=16), timeout=30
        ):
            pass
        stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
        with pytest.raises(grpc.RpcError):
            stub.Generate(pb.GenerateRequest(labels=[99]), timeout=30)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = require("prometheus")
    folder = tmp_path_factory.mktemp("prometheus")
    repository = ROOT / "models"
    default = ("--model-name", DEFAULT_MODEL)
    with (
        ServerProcess(repository, *default, "--cpus", "1") as single,
        ServerProcess(repository, *default, "--cpus", "1", "--workers", "2") as workers,
    ):
        stop = threading.Event()
        drivers = [threading.Thread(target=_traffic, args=(s, stop)) for s in (single, workers)]
        for driver in drivers:
            driver.start()
        port = free_port()
        command = [
            binary,
            f"--config.file={_config(folder, {'single': single, 'workers': workers})}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        with open(folder / "prometheus.log", "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            server = Prometheus(port)
            _wait_for_data(server, process, folder / "prometheus.log")
            yield server
        finally:
            stop.set()
            for driver in drivers:
                driver.join(60)
            process.terminate()
            process.wait(30)


def _wait_for_data(server: Prometheus, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until every target is up and several scrapes and rule evaluations have happened."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            up = server.query("up == 1")
            samples = server.query(f"count_over_time(cvae_served_model_info[{_WINDOW}])")
        except OSError:
            up, samples = [], []
        if len(up) == 4 and samples and min(float(s["value"][1]) for s in samples) >= 10:
            return
        time.sleep(1)
    raise AssertionError(f"Prometheus has no data after 120 s:\n{log.read_text()}")


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _substitute(expression: str, job: str, namespace: str) -> str:
    values = {"job": job, "namespace": namespace, "pod": ".*"}
    text = expression.replace("$__rate_interval", _WINDOW)
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], text)


def _values(result: list[dict[str, Any]]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


@pytest.mark.parametrize(
    ("job", "namespace"), [("cvae", "prod"), ("plain", ".*")], ids=["kubernetes", "plain"]
)
def test_every_dashboard_expression_answers(
    prometheus: Prometheus, job: str, namespace: str
) -> None:
    empty = []
    for panel in _panels(_dashboard()):
        for target in panel["targets"]:
            expression = _substitute(target["expr"], job, namespace)
            result = prometheus.query(expression)
            if not result:
                empty.append(f"{panel['title']}: {expression}")
            values = _values(result)
            assert not any(math.isnan(v) for v in values), (panel["title"], expression, result)
    assert empty == []


def test_the_dashboard_variables_list_both_kinds_of_target(prometheus: Prometheus) -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"] if v["type"] == "query"}
    for name, variable in variables.items():
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"]["query"])
        assert match, name
        selector = _substitute(match.group(1), ".*", ".*")
        values = prometheus.get(f"/api/v1/label/{match.group(2)}/values", **{"match[]": selector})
        expected = {"job": ["cvae", "plain"], "namespace": ["prod"], "pod": sorted(_PODS.values())}
        assert sorted(values) == expected[name], name


def test_replicas_and_versions_are_the_served_ones(prometheus: Prometheus) -> None:
    """Two pods, each with every shipped model and two versions of cvae-mnist loaded: two
    replicas, one served version of each model each."""
    panels = {panel["title"]: panel for panel in _panels(_dashboard())}
    replicas = _substitute(panels["Replicas reporting"]["targets"][0]["expr"], "cvae", "prod")
    assert _values(prometheus.query(replicas)) == [2]
    versions = _substitute(
        panels["Served model version per pod"]["targets"][0]["expr"], "cvae", "prod"
    )
    rows = prometheus.query(versions)
    repository = ModelRepository(ROOT / "models")
    names = repository.model_names()
    assert len(names) > 1 and DEFAULT_MODEL in names  # several models, one of them the default
    newest = {name: newest_spec(ROOT / "models", name).version for name in names}
    served = sorted((r["metric"]["pod"], r["metric"]["name"], r["metric"]["version"]) for r in rows)
    assert served == [(pod, name, newest[name]) for pod in ("cvae-0", "cvae-1") for name in names]
    loaded = sum(min(2, len(ModelRepository(ROOT / "models", n).versions())) for n in names)
    assert len(prometheus.query('cvae_model_info{job="cvae"}')) == 2 * loaded  # --keep-versions 2
    assert prometheus.query('ALERTS{alertname="CvaeModelVersionSkew"}') == []


def test_the_workers_pod_counts_its_workers_memory(prometheus: Prometheus) -> None:
    panels = {panel["title"]: panel for panel in _panels(_dashboard())}
    memory = _substitute(panels["Resident memory per pod"]["targets"][0]["expr"], "cvae", "prod")
    by_pod = {r["metric"]["pod"]: float(r["value"][1]) for r in prometheus.query(memory)}
    supervisor = prometheus.query('process_resident_memory_bytes{job="cvae",pod="cvae-1"}')
    workers = prometheus.query(
        'sum(cvae_worker_process_resident_memory_bytes{job="cvae",pod="cvae-1"})'
    )
    assert by_pod["cvae-1"] == pytest.approx(_values(supervisor)[0] + _values(workers)[0], rel=0.05)
    assert (
        _values(workers)[0] > _values(supervisor)[0]
    )  # each worker holds a model; the supervisor none


def test_every_rule_evaluates(prometheus: Prometheus) -> None:
    groups = prometheus.get("/api/v1/rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    for rule in rules:
        assert rule["health"] == "ok", rule
    # 0 with traffic and no server errors, not "no data"
    errors = prometheus.query('cvae:request_errors:ratio_rate5m{namespace="prod"}')
    assert len(errors) == 3 and set(_values(errors)) == {0.0}
