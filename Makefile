# Two commands set everything up on a fresh Debian/Ubuntu machine:
#   make run   - system packages (when root), virtualenv, dockyard; then opens the app
#   make test  - the same plus test tools; then lint, type check and the whole test suite
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SYSTEM_PACKAGES := runc crun docker-registry busybox-static skopeo buildah podman umoci docker.io \
	apache2-utils iproute2 curl tmux
PYTEST_ARGS ?=

.PHONY: run test setup system-packages lint typecheck screenshots bench clean

system-packages:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(SYSTEM_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	else echo "not root or no apt-get: system packages not installed (tests that need them skip)"; fi

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: system-packages $(BIN)/.installed

run: setup
	$(BIN)/dockyard

lint: $(BIN)/.installed
	$(BIN)/ruff check $(wildcard engine cli tui tests bench)

typecheck: $(BIN)/.installed
	$(BIN)/mypy

test: setup lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

screenshots: setup
	$(BIN)/python scripts/screenshots.py screenshots

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
