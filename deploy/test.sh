#!/usr/bin/env bash
# `make test`: the whole suite on PostgreSQL + Redis + an S3-protocol server whenever
# PostgreSQL and Redis are reachable; on the embedded defaults otherwise (said loudly).
set -euo pipefail
cd "$(dirname "$0")/.."

# Python's bytecode caches are written, whatever the environment says (PYTHONDONTWRITEBYTECODE, set
# on some CI machines): without them each of the run's ~100 Python processes compiles the hub's
# modules again, and each pytest process rewrites the asserts of every test module and plugin again
# (~9 of its ~18 s of CPU before the first test here). `make test-fast`: 206 s with it set, 183 s.
unset PYTHONDONTWRITEBYTECODE

# The hub's processes the tests start (workers, webs, manage.py) run on the hub's own virtualenv,
# as the image installs it (tests/conftest.py HUB_BIN); `make test` builds it.
[ -x .venv-hub/bin/python ] || { echo "deploy/test.sh: no .venv-hub (make install builds it)" >&2; exit 2; }
export HUB_TEST_HUB_BIN="$PWD/.venv-hub/bin"

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
# provider unless it is allowed (hub/settings/, workers/checks.py): the suite uses both.
export DJANGO_SECRET_KEY="test-$run_id-$(head -c 36 /dev/urandom | base64 | tr -d '/+=\n')" HUB_ALLOW_LOCAL_PROVIDER=true
# What runs beside the suite (the S3 server, the second pass below) ends with this script, and a
# Ctrl-C ends the script (not just the pass it interrupts).
s3_pid="" second="" template="" template_pid=""
trap 'kill $s3_pid $second $template_pid 2>/dev/null || true; [ -z "$template" ] || .venv/bin/python -m tests.template_db drop "$template" || true' EXIT
trap 'exit 130' INT
pg_url="${HUB_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
redis_url="${HUB_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"

if .venv/bin/python deploy/probe_services.py "$pg_url" "$redis_url"; then
    export DATABASE_URL="$pg_url" REDIS_URL="$redis_url"
    eval "$(.venv/bin/python -m tests.s3_server "$HUB_VAR_DIR/s3.pid")"
    s3_pid="$(cat "$HUB_VAR_DIR/s3.pid")"
    # One migrated database the test databases are copied from (tests/template_db.py), made
    # while pytest starts (the xdist workers wait for it before they make theirs).
    template="${HUB_TEST_DATABASE_NAME}_template"
    .venv/bin/python -m tests.template_db create "$template" >"$HUB_VAR_DIR/template.log" 2>&1 &
    template_pid=$!
    export HUB_TEST_DATABASE_TEMPLATE="$template"
    echo "Test suite on PostgreSQL ($pg_url), Redis ($redis_url) and S3 ($AWS_S3_ENDPOINT_URL)"
else
    echo "!!!!!!!! PostgreSQL/Redis NOT reachable: the suite runs on the EMBEDDED DEFAULTS (SQLite, filesystem broker, local files) !!!!!!!!"
    if [ "${HUB_REQUIRE_SERVICES:-0}" = "1" ]; then
        echo "HUB_REQUIRE_SERVICES=1: failing instead." >&2
        exit 1
    fi
fi
# Four tests at a time (pytest-xdist): each worker keys its own state, queues, Redis database and
# test database (tests/settings.py); tests/browser, and the tests on Docker, stay on one worker
# (tests/conftest.py). HUB_TEST_WORKERS=0 runs one test at a time, in this process.
workers="${HUB_TEST_WORKERS:-4}"
addopts="${PYTEST_ADDOPTS:-}"
export PYTEST_ADDOPTS="-n $workers --dist loadgroup $addopts"
status=0
# The whole suite (no arguments: `make test`, CI) also runs the API and fault tests once more with
# every fast path off (hub/infra/fastpaths): the libraries' own ways must serve users the same. The
# capacity tests (hundreds of clients on one web process: its threads, connections and memory) are
# left out of that pass: they measure the production configuration, fast paths on, and were the
# heaviest third of the pass, on a machine the first pass keeps busy.
# That pass runs beside the first, on two workers of its own, keyed apart from the first's: its own
# state folder, queues, test database and Redis databases (below the first's); its report follows
# the first's. (One test at a time: one pass after the other.)
fast_paths_off() {
    export HUB_FAST_PATHS=false HUB_VAR_DIR="$HUB_VAR_DIR/fast-paths-off"
    export HUB_GENERATIONS_QUEUE="$HUB_GENERATIONS_QUEUE-off" HUB_HOUSEKEEPING_QUEUE="$HUB_HOUSEKEEPING_QUEUE-off"
    export HUB_TEST_DATABASE_NAME="${HUB_TEST_DATABASE_NAME}_off" HUB_TEST_REDIS_DB_OFFSET="$workers"
    # its last-failed list would overwrite the first pass's in .pytest_cache
    export PYTEST_ADDOPTS="-n $(( workers > 0 ? 2 : 0 )) --dist loadgroup -p no:cacheprovider $addopts"
    mkdir -p "$HUB_VAR_DIR"
    exec .venv/bin/pytest tests/api tests/faults -m "not capacity"
}
if [ "$#" -eq 0 ] && [ "$workers" != 0 ]; then
    second_log="$HUB_VAR_DIR/fast-paths-off.log"
    (fast_paths_off) >"$second_log" 2>&1 &
    second=$!
fi
.venv/bin/pytest "$@" || status=$?
if [ "$#" -eq 0 ]; then
    echo "=== tests/api tests/faults again with HUB_FAST_PATHS=false ==="
    if [ -n "$second" ]; then
        wait "$second" || status=$?
        second=""
        cat "$second_log"
    else
        (fast_paths_off) || status=$?
    fi
fi
exit $status
