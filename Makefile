# The two commands: `make run` and `make test`. Both set up what they need and are idempotent.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements/*.txt pyproject.toml | cksum | cut -d' ' -f1)
SYSTEM_PACKAGES := espeak-ng sox chromium chromium-driver libportaudio2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: run test setup system lint typecheck pytest bench clean

run: setup
	$(BIN)/ambient prepare --demo
	$(BIN)/ambient run

setup: $(STAMP)

# torch==2.13.0 first, on its own: its CPU build lies on local disk; any other spec pulls CUDA.
$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements/runtime.txt -r requirements/dev.txt
	$(BIN)/pip install -q --no-deps -r requirements/nodeps.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

# Packages the tests need from Debian (real speech audio, a real browser, PortAudio).
system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

test: setup system lint typecheck pytest

lint: setup
	$(BIN)/ruff check ambient integrations tests

typecheck: setup
	$(BIN)/mypy ambient

pytest: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/ambient bench all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
