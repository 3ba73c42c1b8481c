PYTHON ?= python3
VENV := .venv
# One virtualenv, filled in layers: `make run` installs only what the hub runs on (pyproject's
# dependencies), `make test` adds the test extra and `make bench` the bench extra, each once per
# pyproject.toml change (the test extra's Playwright, schemathesis, moto… were more than half a fresh
# clone's time to its first image).
HUB_STAMP := $(VENV)/.installed-hub
TEST_STAMP := $(VENV)/.installed
# uv installs the packages pyproject.toml pins (the same releases pip resolves): from a fresh clone
# the test extra took pip ~40 s of one core, uv ~7 s, fetching and unpacking in parallel. pip only
# installs uv itself, at this release. --native-tls: the machine's certificate store, as pip uses.
UV_VERSION := 0.13.10
UV := $(VENV)/bin/uv
UV_INSTALL = $(UV) pip install --quiet --native-tls --python $(1)/bin/python

.PHONY: run test test-fast install chromium docker nginx clean bench

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(UV): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)

$(HUB_STAMP): pyproject.toml | $(UV)
	$(call UV_INSTALL,$(VENV)) -e .
	touch $@

# The test extra brings the hub's own dependencies with it: both layers are then current.
$(TEST_STAMP): pyproject.toml | $(UV)
	$(call UV_INSTALL,$(VENV)) -e '.[test]'
	touch $(HUB_STAMP) $@

# The hub's processes the tests and the bench start run on the hub's own dependencies only, as
# the image installs them: the test extras' packages (cryptography, rich, aiohttp…) are imported
# when present, and would count in the hub's memory and in each process start's CPU.
HUB_VENV := .venv-hub
HUB_VENV_STAMP := $(HUB_VENV)/.installed
$(HUB_VENV_STAMP): pyproject.toml | $(UV)
	$(PYTHON) -m venv $(HUB_VENV)
	$(call UV_INSTALL,$(HUB_VENV)) -e .
	touch $(HUB_VENV_STAMP)

# The test virtualenv and the hub's, side by side: ~5 s from a fresh clone, one after the other ~10.
install: | $(UV)
	@$(MAKE) --no-print-directory -j2 $(TEST_STAMP) $(HUB_VENV_STAMP)

run: $(HUB_STAMP)
	deploy/run-local.sh

# Debian's Chromium for the Playwright browser tests (CI runs on a fresh machine, as root).
chromium:
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# Debian's Docker and mmdebstrap for the deploy tests (tests/deploy): no image registry is
# reachable, so their base images are made from the Debian archive. dockerd is started by the tests.
docker:
	@test -x /usr/sbin/dockerd -a -x /usr/bin/mmdebstrap || (apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io mmdebstrap)

# Debian's nginx for the proxy tests (tests/proxy): a real proxy that cuts idle reads.
nginx:
	@test -x /usr/sbin/nginx || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light)

# Everything, four tests at a time (pytest-xdist; README.md "Tests" says how they keep apart).
test: install chromium docker nginx
	deploy/test.sh

# The inner loop: no browser, no Docker, nothing slow (markers in pyproject.toml).
test-fast: install
	deploy/test.sh -m 'not browser and not deploy and not slow'

# Benchmarks, run by hand (bench/README.md): make bench SCENARIO=sync-c32-0s [ARGS='--requests 50']
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(TEST_STAMP) pyproject.toml
	$(call UV_INSTALL,$(VENV)) -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) $(HUB_VENV_STAMP)
	$(VENV)/bin/python -m bench $(if $(SCENARIO),run $(SCENARIO) $(ARGS),list)

clean:
	rm -rf $(VENV) $(HUB_VENV) var .var-test test-artifacts
