PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test install browsers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	deploy/run-local.sh

test: $(STAMP)
	deploy/test.sh

clean:
	rm -rf $(VENV) var .var-test test-artifacts
