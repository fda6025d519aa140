# make demo: sidecar + nginx + a sample gallery on local storage.  make test: make lint, then the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# What the demo runs: a virtualenv, and nginx with njs.
DEMO_PACKAGES := python3-venv nginx libnginx-mod-http-js
# The suite adds headless Chromium, and Ceph's RADOS Gateway as its second S3 store (tests/support/rgw.py).
APT_PACKAGES := $(DEMO_PACKAGES) chromium chromium-driver ceph-mon ceph-osd radosgw

.PHONY: setup system-packages demo-packages lint test mutation demo bench clean

setup: system-packages $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# Debian packages installed when missing and allowed (root); otherwise one line saying the command to run.
define install_missing
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "missing Debian packages:$$missing; run: sudo apt-get install$$missing" >&2; exit 1; \
		fi; \
	fi
endef

system-packages:
	$(call install_missing,$(APT_PACKAGES))

demo-packages:
	$(call install_missing,$(DEMO_PACKAGES))

# Style (ruff) and types (mypy --strict, pyproject's [tool.mypy]); the rooms' import rules are a test
# (tests/test_layout.py). mypy reads the packages as installed, where the folder middleware/ is
# resize_sidecar.middleware: build/installed/ holds links to the sources (tests/support/installed.py).
lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m tests.support.installed build/installed
	cd build/installed && $(abspath $(PY)) -m mypy --config-file $(CURDIR)/pyproject.toml -p resize_sidecar -p middleware

test: setup lint
	$(PY) -m pytest

# Mutation testing (docs/mutants.md): mutants of the signed URLs, the settings and the miss path, against the fast
# tests of the core, media and web rooms (pyproject's [tool.mutmut]). MUTANTS narrows the run to some mutants' names
# (CI: signing's functions and the miss path); the run fails when the score falls under MUTATION_FLOOR percent.
MUTANTS ?= resize_sidecar.*
MUTATION_FLOOR ?= 90
# The tests run from mutmut's copy in mutants/: they find the shared images where the checkout's tests do.
mutation: export TESTDATA_IMAGES ?= $(abspath ../shared/testdata/images)
mutation: $(VENV)/.installed
	rm -rf mutants
	$(PY) -m mutmut run $(MUTANTS)
	$(PY) .ci/mutation_score.py $(MUTATION_FLOOR) $(MUTANTS)

demo: demo-packages $(VENV)/.installed
	$(PY) deploy/demo.py

# About 20 minutes on 2 cores: writes bench/results/latest.{md,png,json} (the miss and hit paths) and
# bench/results/workload.{md,json} (page views of a site); see bench/README.md.
bench: setup
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/workload.py

clean:
	rm -rf $(VENV) .demo .pytest_cache .hypothesis mutants build/installed
