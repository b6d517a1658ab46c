# ha-gitops: every target runs as root on a Debian/Ubuntu machine.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
.PHONY: setup demo demo-down test test-fast typecheck lint bench clean

setup:
	@bash deploy/install-debian-packages.sh
	@$(MAKE) --no-print-directory $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: setup
	$(VENV)/bin/ha-gitops sandbox demo --cluster desired/kamailio
	$(VENV)/bin/ha-gitops sandbox status

demo-down: setup
	$(VENV)/bin/ha-gitops sandbox down

# Two workers, each test file on one of them (module fixtures, one sandbox per file): the sandbox tests
# mostly wait on the cluster, so two files side by side halve the suite's time on two cores.
test: setup
	$(VENV)/bin/ruff check controller tests bench deploy/ci
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

# No root, no sandbox, no PostgreSQL server, nothing slow (see tests/conftest.py): the edit-test loop.
test-fast: setup
	$(VENV)/bin/ruff check controller tests bench deploy/ci
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -m "not sandbox and not postgres and not slow"

typecheck: setup
	$(VENV)/bin/mypy

lint: setup
	$(VENV)/bin/ruff check controller tests bench deploy/ci

bench: setup
	$(PY) bench/sandbox_updown.py
	$(PY) bench/cib_diff_bench.py
	$(PY) bench/crm_conversion_bench.py
	$(PY) bench/bounded_work_bench.py
	$(PY) bench/agent_bench.py
	$(PY) bench/preview_bench.py

clean:
	rm -rf $(VENV) build *.egg-info
