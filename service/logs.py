"""Log output of `cvae serve`: plain text, or one JSON object per line for log collectors."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_WORKER_TEXT_FORMAT = (
    "%(asctime)s %(levelname)s [worker %(worker)d pid %(process)d] %(name)s: %(message)s"
)


class _WorkerTag(logging.Filter):
    """Stamps each record with the index of the worker process (`cvae serve --workers N`)."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


class _PeerGone(logging.Filter):
    """grpc.aio logs "ExecuteBatchError raised in core by servicer method" with a traceback,
    at ERROR, when a call's last batch (response and status) fails because its client reset
    the connection before gRPC noticed the reset (a client that blocks flow control and then
    resets gave one traceback per connection). Nothing failed on the server's side: such a
    record becomes one DEBUG line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.levelno == logging.ERROR and str(record.msg).startswith(_PEER_GONE)):
            return True
        logging.getLogger("service.server").debug(
            "a client went away before its answer was sent: %s", record.getMessage()
        )
        return False


_PEER_GONE = "ExecuteBatchError raised in core by servicer method"
_GRPC_AIO_LOGGER = "grpc._cython.cygrpc"


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "message", "process"[, "worker"][, "exception"]} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        worker = getattr(record, "worker", None)
        if worker is not None:
            document["worker"] = worker
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


def configure_logging(log_format: str, level: str, worker: int | None = None) -> None:
    """Send the root logger's records to stderr in `log_format` ("text" or "json").

    `worker`: the index of this worker process; each line then names it and its pid.
    """
    handler = logging.StreamHandler(sys.stderr)
    text_format = _TEXT_FORMAT if worker is None else _WORKER_TEXT_FORMAT
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(text_format)
    handler.setFormatter(formatter)
    if worker is not None:
        handler.addFilter(_WorkerTag(worker))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    grpc_aio = logging.getLogger(_GRPC_AIO_LOGGER)
    if not any(isinstance(existing, _PeerGone) for existing in grpc_aio.filters):
        grpc_aio.addFilter(_PeerGone())
