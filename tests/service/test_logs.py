"""service/logs.py: text or JSON lines; a worker of `--workers N` names itself on each line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from service.logs import configure_logging


@pytest.fixture
def restored_root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_of_a_worker_carry_its_index(
    restored_root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "INFO", worker=3)
    logging.getLogger("service.test").info("hello %s", "there")
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["worker"] == 3 and record["message"] == "hello there"
    assert record["logger"] == "service.test" and isinstance(record["process"], int)


def test_text_lines_name_the_worker_and_pid_only_for_workers(
    restored_root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("text", "INFO", worker=1)
    logging.getLogger("service.test").info("one")
    assert "[worker 1 pid " in capsys.readouterr().err
    configure_logging("text", "INFO")
    logging.getLogger("service.test").info("two")
    line = capsys.readouterr().err.strip()
    assert line.endswith("INFO service.test: two") and "worker" not in line
    configure_logging("json", "INFO")
    logging.getLogger("service.test").info("three")
    assert "worker" not in json.loads(capsys.readouterr().err.strip())
