#!/usr/bin/env bash
# The example session of docs/generate.md: `cvae generate` against `cvae serve` on the shipped
# model repository (models/). Prints each command and its output; run from the repository root:
#   PATH=.venv/bin:$PATH bash docs/generate-session.sh
set -u
repository=$(pwd)/models
work=$(mktemp -d)
port=$(python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
cvae serve --model-repository "$repository" --model-name cvae-mnist --host 127.0.0.1 --port "$port" --metrics-port 0 \
    --log-level WARNING &
server=$!
trap 'kill $server; wait $server 2>/dev/null; rm -rf "$work"' EXIT
python -c "
import sys, time, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
stub = health_pb2_grpc.HealthStub(grpc.insecure_channel('127.0.0.1:$port'))
for _ in range(600):
    try:
        if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
            sys.exit(0)
    except grpc.RpcError:
        pass
    time.sleep(0.1)
sys.exit('cvae serve did not start')
" || exit 1
cd "$work" || exit 1

show() {  # print the command as typed (the server as localhost:50051), then run it; log lines
    # lose their timestamps, the shell's kill notice its line and process numbers
    echo "\$ ${*//127.0.0.1:$port/localhost:50051}"
    (eval "$@") 2>&1 | sed -E -e "s/127.0.0.1:$port/localhost:50051/g" \
        -e 's/^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:,]+ //' -e 's/^.*line [0-9]+: +[0-9]+ Killed .*/Killed/'
}
server_at=127.0.0.1:$port

echo "\$ cvae serve --model-repository models --model-name cvae-mnist &"
show cvae generate --server $server_at --per-label 1000 --seed 42 --format npz --out synth.npz --no-progress
show cvae generate --server $server_at --per-label 1000 --seed 42 --format npz --out again/synth.npz --no-progress
show "sha256sum synth.npz again/synth.npz; cmp synth.npz.manifest.json again/synth.npz.manifest.json && echo manifests identical"
echo
show 'for i in 0 1 2; do JOB_COMPLETION_INDEX=$i CVAE_SHARD_COUNT=3 cvae generate --server '$server_at' --per-label 1000 --seed 42 --out shards/$i --no-progress; done'
show cvae generate merge shards/0 shards/1 shards/2 --out merged/synth.npz
show "cmp synth.npz merged/synth.npz && cmp synth.npz.manifest.json merged/synth.npz.manifest.json && echo byte-identical"
echo
show "timeout -s KILL 6 cvae generate --server $server_at --per-label 5000 --seed 7 --out big.npz --no-progress; echo \"exit status \$?\"; ls big.npz.partial/chunks | wc -l"
show cvae generate --server $server_at --per-label 5000 --seed 7 --out big.npz --no-progress
show cvae generate --server $server_at --per-label 5000 --seed 7 --out clean/big.npz --no-progress
show "cmp big.npz clean/big.npz && echo identical"
echo
show cvae generate --server $server_at --per-label 10 --labels 3,12 --out x.npz
show cvae generate --server localhost:1 --per-label 10 --timeout 5 --out x.npz
show cvae generate --server $server_at --per-label 10 --out /proc/x.npz
show python -c "'from pathlib import Path; import numpy as np; from cvae.jobs.readers import read_dataset; images, labels = read_dataset(Path(\"synth.npz\")); print(images.dtype, images.shape, labels.dtype, np.bincount(labels).tolist())'"
