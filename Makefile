# rayop: two commands matter on a fresh machine: `make demo` and `make test`.
# Everything they need (venv, Go-built control-plane binaries, a Ray environment) is installed on demand
# and cached outside the repo under $(RAYOP_CACHE_DIR), keyed by version.
SHELL := /bin/bash
include versions.env
export RAYOP_K8S_VERSION RAYOP_RAY_VERSION RAYOP_METRICS_SERVER_VERSION RAYOP_HELM_VERSION RAYOP_GATEWAY_API_VERSION
RAYOP_CACHE_DIR ?= $(HOME)/.cache/rayop
export RAYOP_CACHE_DIR
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
RAY_ENV := $(RAYOP_CACHE_DIR)/ray/$(RAYOP_RAY_VERSION)
export RAYOP_RAY_ENV := $(RAY_ENV)
K8S_DIR := $(RAYOP_CACHE_DIR)/k8s/$(RAYOP_K8S_VERSION)
export RAYOP_K8S_BIN_DIR := $(K8S_DIR)
export RAYOP_HELM := $(RAYOP_CACHE_DIR)/helm/$(RAYOP_HELM_VERSION)/helm
# `make image` needs a container engine (docker or podman); nothing else here does.
ENGINE ?= docker
IMAGE ?= rayop:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
PYTEST_ARGS ?=

.PHONY: all demo test test-unit test-integration test-e2e lint crds chart-crds manifests image bench bench-peer chaos \
	deps k8s metrics-server gateway-api kuberay helm ray-env system-deps browser-deps clean

all: test

$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.stamp-*; touch $@

deps: system-deps $(STAMP) k8s metrics-server gateway-api helm ray-env browser-deps

system-deps:
	@bash scripts/system-deps.sh

k8s:
	@bash scripts/build-k8s.sh

metrics-server:
	@bash scripts/build-metrics-server.sh

gateway-api:
	@bash scripts/fetch-gateway-api.sh

helm:
	@bash scripts/build-helm.sh

ray-env:
	@bash scripts/ray-env.sh

# KubeRay's operator and CRDs from its Go module, for the side-by-side benchmark only (not a test dependency).
kuberay:
	@bash scripts/build-kuberay.sh

browser-deps:
	@bash scripts/browser-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check rayop tests bench
	$(VENV)/bin/ruff format --check rayop tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: deps lint
	@bash scripts/pytest-tier.sh "" $(PYTEST_ARGS)

test-unit: $(STAMP)
	@bash scripts/pytest-tier.sh unit $(PYTEST_ARGS)

test-integration: deps
	@bash scripts/pytest-tier.sh integration $(PYTEST_ARGS)

test-e2e: deps
	@bash scripts/pytest-tier.sh e2e $(PYTEST_ARGS)

crds: $(STAMP) k8s
	$(VPY) -m rayop.cli.main dev gen-crds
	@$(MAKE) --no-print-directory chart-crds

# Helm installs CRDs from the chart's crds/ folder: a copy of config/crd (a test fails when they differ).
chart-crds:
	@mkdir -p charts/rayop/crds
	@rm -f charts/rayop/crds/*.yaml
	cp config/crd/*.yaml charts/rayop/crds/

# config/default/rayop.yaml: the chart rendered with its default values (a test fails when stale).
manifests: helm chart-crds
	bash scripts/gen-manifests.sh

# The operator image (Dockerfile); needs a container engine, e.g. `make image ENGINE=podman`.
image:
	$(ENGINE) build --build-arg PYTHON_IMAGE=$(RAYOP_PYTHON_IMAGE) -t $(IMAGE) .

demo: deps
	$(VPY) -m rayop.cli.main demo

bench: deps
	$(VPY) bench/run.py

# rayop against KubeRay on the same kind of plane (about 30 minutes); rewrites its BENCHMARKS.md section.
bench-peer: deps kuberay
	$(VPY) bench/run.py kuberay_peer

# The fault-injection campaign (RELIABILITY.md): about an hour; CHAOS_QUICK=1 runs one fault of each kind
# (about 10 minutes); CHAOS_SEED=<n> replays a campaign. `make test` runs a short one
# (tests/integration/test_chaos_smoke.py).
CHAOS_QUICK ?=
CHAOS_SEED ?=
chaos: deps
	$(VPY) bench/chaos.py $(if $(CHAOS_QUICK),--quick) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
