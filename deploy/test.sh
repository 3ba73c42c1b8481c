#!/usr/bin/env bash
# `make test`: the whole suite, on PostgreSQL + Redis whenever they are reachable.
set -euo pipefail
cd "$(dirname "$0")/.."

export HUB_VAR_DIR="$PWD/.var-test"
rm -rf "$HUB_VAR_DIR" && mkdir -p "$HUB_VAR_DIR"
unset DATABASE_URL REDIS_URL AWS_STORAGE_BUCKET_NAME IMAGE_PROVIDER
pg_url="${HUB_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
redis_url="${HUB_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"

if .venv/bin/python deploy/probe_services.py "$pg_url" "$redis_url"; then
    export DATABASE_URL="$pg_url" REDIS_URL="$redis_url"
    echo "Test suite on PostgreSQL ($pg_url) and Redis ($redis_url)"
else
    echo "!!!!!!!! PostgreSQL/Redis NOT reachable: the suite runs on the EMBEDDED DEFAULTS (SQLite, filesystem broker) !!!!!!!!"
    if [ "${HUB_REQUIRE_SERVICES:-0}" = "1" ]; then
        echo "HUB_REQUIRE_SERVICES=1: failing instead." >&2
        exit 1
    fi
fi
exec .venv/bin/pytest "$@"
