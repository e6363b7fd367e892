#!/bin/sh
# Build and run the serving image with podman on a machine without Docker's engine or Docker Hub
# (tests/image/ and `make image-test` use it; docs/deploy.md, "The image without Docker").
#
#   podman/image.sh base    a local stand-in for python:3.11-slim-bookworm (Debian bookworm's own
#                           python3 from mmdebstrap, pip in /usr/local as in the official image),
#                           imported as $BASE_IMAGE; kept once made
#   podman/image.sh build   deploy/Dockerfile on $BASE_IMAGE, tagged $IMAGE
#   podman/image.sh run ARGS...   podman run as Kubernetes runs the pod (read-only root, /tmp a
#                           tmpfs, every capability dropped, no new privileges, non-root)
#
# pip inside the build trusts this machine's CA bundle ($PIP_CA, mounted for the build's RUN steps
# at /run/secrets/pip_ca, where image.sh looks; never copied into a layer).
set -eu

BASE_IMAGE=${BASE_IMAGE:-localhost/cvae-python-base:3.11-bookworm}
IMAGE=${IMAGE:-localhost/cvae-mnist-service:dev}
PIP_CA=${PIP_CA:-/etc/ssl/certs/ca-certificates.crt}
# Debian's podman on this kernel: crun fails on hybrid cgroups and on raising rlimits.
PODMAN="podman --runtime runc --cgroup-manager=cgroupfs"
ULIMITS="--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"

# stand_in ROOT: make a bookworm root what the Dockerfile expects of python:3.11-slim-bookworm:
# a python that is not "externally managed", with pip and setuptools in /usr/local (the serving
# stage uninstalls them), from the wheels Debian ships for venvs.
stand_in() {
    rm -f "$1"/usr/lib/python3.11/EXTERNALLY-MANAGED
    chroot "$1" sh -c 'set -- /usr/share/python-wheels/pip-*.whl &&
        python3 "$1/pip" install --quiet --no-index --find-links /usr/share/python-wheels pip setuptools'
    rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*
}

base() {
    if $PODMAN image exists "$BASE_IMAGE"; then
        return
    fi
    command -v mmdebstrap >/dev/null || { echo "image.sh: needs mmdebstrap: apt-get install -y mmdebstrap" >&2; exit 2; }
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    root=$scratch/root
    mmdebstrap --variant=minbase \
        --include=python3,python3-venv,python-is-python3,ca-certificates,passwd \
        bookworm "$root"
    stand_in "$root"
    tar -C "$root" -cf "$scratch/rootfs.tar" .
    $PODMAN import --change 'CMD ["python3"]' "$scratch/rootfs.tar" "$BASE_IMAGE" >/dev/null
}

build() {
    base
    $PODMAN build --network host $ULIMITS \
        --build-arg PYTHON_IMAGE="$BASE_IMAGE" \
        --volume "$PIP_CA:/run/secrets/pip_ca:ro" \
        --ignorefile deploy/Dockerfile.dockerignore \
        -f deploy/Dockerfile -t "$IMAGE" .
}

run() {
    exec $PODMAN run --network host --read-only --tmpfs /tmp --cap-drop ALL \
        --security-opt no-new-privileges $ULIMITS "$@"
}

[ $# -ge 1 ] || { sed -n '5,11p' "$0" >&2; exit 2; }
command=$1
shift
case $command in
    base) base ;;
    build) build ;;
    run) run "$@" ;;
    *) sed -n '5,11p' "$0" >&2; exit 2 ;;
esac
