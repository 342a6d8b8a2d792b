# Montage: `make demo` runs the main job, `make test` the whole suite.
# Both start with `make setup`, which installs ffmpeg/espeak-ng (apt-get) when
# missing and builds .venv from the pins in pyproject.toml.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] && echo "" || (command -v sudo >/dev/null && echo sudo))
APT_PKGS := ffmpeg espeak-ng
# A CPU build of torch may lie on disk; pip takes it from there when present.
FIND_LINKS := $(shell [ -d /opt/wheels ] && echo "--find-links /opt/wheels")

.PHONY: setup system-deps demo test lint clean bench

setup: system-deps $(STAMP)

system-deps:
	@missing=""; \
	command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing="$$missing ffmpeg"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then \
	    echo "error: need$$missing but not root and no sudo; install them with your package manager" >&2; exit 1; fi; \
	  command -v apt-get >/dev/null || { echo "error: need$$missing and apt-get is not available; install them by hand" >&2; exit 1; }; \
	  echo "installing$$missing with apt-get"; \
	  log=$$(mktemp); \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PKGS); } \
	    >$$log 2>&1 || { cat $$log; exit 1; }; rm -f $$log; \
	fi

$(STAMP): pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@echo "building $(VENV) from pyproject.toml (pip's log: $(VENV)/pip.log)"
	@$(PY) -m pip install -q --upgrade pip > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@$(PY) -m pip install -q $(FIND_LINKS) -e '.[train,dev,tools,gcp,aws]' >> $(VENV)/pip.log 2>&1 \
	  || { cat $(VENV)/pip.log; exit 1; }
	@# deno, the challenge solver, curl_cffi, ffmpeg, the extras: what a YouTube run needs
	@$(PY) -m ingest doctor > $(VENV)/doctor.log 2>&1 || { cat $(VENV)/doctor.log; exit 1; }
	@touch $(STAMP)

demo: setup
	$(PY) demo.py

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

bench: setup
	$(PY) bench/bench_core.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-out
