#!/usr/bin/env bash
# `make test`: the whole suite on PostgreSQL + Redis + an S3-protocol server whenever
# PostgreSQL and Redis are reachable; on the embedded defaults otherwise (said loudly).
set -euo pipefail
cd "$(dirname "$0")/.."

# Lint and format first: a style failure is found in seconds, not after the suite.
.venv/bin/ruff check .
.venv/bin/ruff format --check .

# Each run has its own state folder, queues and test database, so two runs on one machine
# (a developer's and CI's) never consume each other's tasks or drop each other's database.
run_id="$$"
mkdir -p .var-test
find .var-test -mindepth 1 -maxdepth 1 -mmin +180 -exec rm -rf {} +
export HUB_VAR_DIR="$PWD/.var-test/run-$run_id"
rm -rf "$HUB_VAR_DIR" && mkdir -p "$HUB_VAR_DIR"
export HUB_GENERATIONS_QUEUE="generations-test-$run_id" HUB_HOUSEKEEPING_QUEUE="housekeeping-test-$run_id"
export HUB_TEST_DATABASE_NAME="test_hub_$run_id"
unset DATABASE_URL REDIS_URL CELERY_BROKER_URL AWS_STORAGE_BUCKET_NAME AWS_S3_ENDPOINT_URL IMAGE_PROVIDER PUBLIC_BASE_URL
# On PostgreSQL the hub refuses to start without a shared secret, and with the built-in `local`
# provider unless it is allowed (hub/settings.py, workers/checks.py): the suite uses both.
export DJANGO_SECRET_KEY="test-$run_id-$(head -c 36 /dev/urandom | base64 | tr -d '/+=\n')" HUB_ALLOW_LOCAL_PROVIDER=true
pg_url="${HUB_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
redis_url="${HUB_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"

if .venv/bin/python deploy/probe_services.py "$pg_url" "$redis_url"; then
    export DATABASE_URL="$pg_url" REDIS_URL="$redis_url"
    eval "$(.venv/bin/python -m tests.s3_server "$HUB_VAR_DIR/s3.pid")"
    trap 'kill "$(cat "$HUB_VAR_DIR/s3.pid")" 2>/dev/null || true' EXIT
    echo "Test suite on PostgreSQL ($pg_url), Redis ($redis_url) and S3 ($AWS_S3_ENDPOINT_URL)"
else
    echo "!!!!!!!! PostgreSQL/Redis NOT reachable: the suite runs on the EMBEDDED DEFAULTS (SQLite, filesystem broker, local files) !!!!!!!!"
    if [ "${HUB_REQUIRE_SERVICES:-0}" = "1" ]; then
        echo "HUB_REQUIRE_SERVICES=1: failing instead." >&2
        exit 1
    fi
fi
# Two tests at a time (pytest-xdist): each worker keys its own state, queues, Redis database and
# test database (tests/settings.py); tests/browser and tests/deploy each stay on one worker
# (tests/conftest.py). HUB_TEST_WORKERS=0 runs one test at a time, in this process.
export PYTEST_ADDOPTS="-n ${HUB_TEST_WORKERS:-2} --dist loadgroup ${PYTEST_ADDOPTS:-}"
status=0
.venv/bin/pytest "$@" || status=$?
# The whole suite (no arguments: `make test`, CI) also runs the API and fault tests once more with
# every fast path off (hub/infra/fastpaths): the libraries' own ways must serve users the same.
if [ "$#" -eq 0 ]; then
    echo "=== tests/api tests/faults again with HUB_FAST_PATHS=false ==="
    HUB_FAST_PATHS=false .venv/bin/pytest tests/api tests/faults || status=$?
fi
exit $status
