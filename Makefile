# make demo: sidecar + nginx + a sample gallery on local storage.  make test: the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# ceph-mon, ceph-osd and radosgw: the suite's second S3 store, Ceph's RADOS Gateway (tests/rgw.py).
APT_PACKAGES := nginx libnginx-mod-http-js chromium chromium-driver ceph-mon ceph-osd radosgw

.PHONY: setup system-packages test demo bench clean

setup: $(VENV)/.installed system-packages

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# Debian packages the tests and the demo run for real; installed when missing and allowed (root).
system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "missing Debian packages: $$missing (run: sudo apt-get install $$missing)"; exit 1; \
		fi; \
	fi

test: setup
	$(PY) -m pytest

demo: setup
	$(PY) deploy/demo.py

# About 10 minutes on 2 cores: writes bench/results/latest.{md,png,json}; see bench/README.md.
bench: setup
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .demo .pytest_cache .hypothesis
