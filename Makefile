# The two commands: `make run` and `make test`. Both set up what they need and are idempotent.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements/*.txt pyproject.toml | cksum | cut -d' ' -f1)
SYSTEM_PACKAGES := espeak-ng sox chromium chromium-driver libportaudio2 cmake g++ git systemd
# llama-cpp-python builds from source (-march=native): its wheel is cached per CPU, outside the repo.
LLAMA_PIN    := $(shell sed -n 's/^llama-cpp-python\[server\]==\([^ ]*\).*/\1/p' requirements/server.txt)
WHEEL_CACHE  := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/ambient/wheels/$(shell (uname -m; grep -m1 '^flags' /proc/cpuinfo) | cksum | cut -d' ' -f1)
SERVER_STAMP := $(VENV)/.server-$(shell cat requirements/server.txt | cksum | cut -d' ' -f1)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: run test setup setup-server system lint typecheck pytest bench clean

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

# llama-cpp-python's server, for the openai backend's tests: built once into WHEEL_CACHE (cmake, g++).
setup-server: $(SERVER_STAMP)

$(SERVER_STAMP): $(STAMP) | system
	@ls $(WHEEL_CACHE)/llama_cpp_python-$(LLAMA_PIN)-*.whl >/dev/null 2>&1 || { \
		echo "building llama-cpp-python $(LLAMA_PIN) into $(WHEEL_CACHE) (once; about 20 minutes on 2 cores)"; \
		CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip wheel -q --no-deps -w $(WHEEL_CACHE) llama-cpp-python==$(LLAMA_PIN); }
	$(BIN)/pip install -q --find-links $(WHEEL_CACHE) -r requirements/server.txt
	rm -f $(VENV)/.server-*
	touch $@

# Packages the tests need from Debian (real speech audio, a real browser, PortAudio).
system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

test: setup system setup-server lint typecheck pytest

lint: setup
	$(BIN)/ruff check ambient integrations tests

typecheck: setup
	$(BIN)/mypy ambient integrations

pytest: setup setup-server
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/ambient bench all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
