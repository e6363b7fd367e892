#!/usr/bin/env bash
# docs/images/playground.png: `cvae playground` on `cvae serve` with the shipped model repository
# (models/; the newest version, whose encoder the page needs), driven by headless Chromium as its
# test drives it (tests/cvae/playground/playground_browser.js: draws a 7, restyles it, samples).
# Needs what `make test` installs (.venv, .venv/node's playwright-core, Debian's chromium); run
# from the repository root:  PATH=.venv/bin:$PATH bash docs/playground-screenshot.sh
set -eu
free_port() { python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
port=$(free_port)
page=$(free_port)
cvae serve --model-repository "$(pwd)/models" --model-name cvae-mnist --host 127.0.0.1 --port "$port" --metrics-port 0 \
    --log-level WARNING &
server=$!
trap 'kill $server; wait $server 2>/dev/null' EXIT
python - "$port" <<'PY'
import sys, time, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}"))
for _ in range(600):
    try:
        if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
            sys.exit(0)
    except grpc.RpcError:
        pass
    time.sleep(0.1)
sys.exit("cvae serve did not start")
PY
cvae playground --server "127.0.0.1:$port" --host 127.0.0.1 --port "$page" >/dev/null 2>&1 &
playground=$!
trap 'kill $server $playground; wait $server $playground 2>/dev/null' EXIT
python - "$page" <<'PY'
import sys, time, urllib.request
for _ in range(600):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=1) as reply:
            if reply.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit("cvae playground did not start")
PY
NODE_PATH=$(pwd)/.venv/node/node_modules node tests/cvae/playground/playground_browser.js \
    "http://127.0.0.1:$page/" docs/images/playground.png
