PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test install chromium docker nginx clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
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

test: $(STAMP) chromium docker nginx
	deploy/test.sh

# Benchmarks, run by hand (bench/README.md): make bench SCENARIO=sync-c32-0s [ARGS='--requests 50']
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(VENV)/bin/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# The bench runs the hub's processes on the hub's own dependencies only, as the image installs
# them: the test extras' packages (cryptography, rich, aiohttp…) are imported when present and
# would count in the hub's memory.
HUB_VENV := .venv-hub
HUB_STAMP := $(HUB_VENV)/.installed
$(HUB_STAMP): pyproject.toml
	$(PYTHON) -m venv $(HUB_VENV)
	$(HUB_VENV)/bin/pip install --quiet --upgrade pip
	$(HUB_VENV)/bin/pip install --quiet -e .
	touch $(HUB_STAMP)

bench: $(BENCH_STAMP) $(HUB_STAMP)
	$(VENV)/bin/python -m bench $(if $(SCENARIO),run $(SCENARIO) $(ARGS),list)

clean:
	rm -rf $(VENV) $(HUB_VENV) var .var-test test-artifacts
