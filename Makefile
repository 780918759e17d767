# Two commands set everything up on a fresh machine:
#   make run    - create .venv if needed, then run the whole pipeline (MLproject entry point `main`)
#   make test   - create .venv if needed, then the static checks (make check) and the test suite
#                 (tests/unit, tests/integration, tests/e2e)
#   make test-unit - create .venv if needed, then only tests/unit (no MLflow store, process or socket; < 60 s)
#   make check  - ruff (lint + import order), mypy (types), lint-imports (layer/dependency contracts)
# CONFIG picks experiments/<CONFIG>.yaml; quickstart runs offline on synthetic covers.
PY       ?= python3
VENV     ?= .venv
CONFIG   ?= quickstart
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed

# MLflow telemetry off for everything make runs (README: "Privacy"); set it to false to turn it back on
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= true

.PHONY: run test test-unit check venv browser postgres clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

# The browser test drives Debian's chromium (browser downloads are not possible offline).
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: sudo apt-get install chromium (the browser test will be skipped)"; fi; }

# The PostgreSQL tests start their own throwaway cluster with Debian's server binaries; Spark needs a JRE.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v java >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    postgresql default-jre-headless >/dev/null; \
	  else echo "postgresql/java missing: sudo apt-get install postgresql default-jre-headless"; fi; }

run: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/mlflow run . --env-manager local --experiment-name album-genre \
	  -P config=experiments/$(CONFIG).yaml

check: $(STAMP)
	$(BIN)/ruff check genreclf tests tools
	$(BIN)/mypy
	$(BIN)/lint-imports

test: check browser postgres
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -ra tests/unit $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache test-output
