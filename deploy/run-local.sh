#!/usr/bin/env bash
# `make run`: the API and a Celery worker (which also runs the periodic sweep) in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT="${PORT:-8000}"
# A person reads this terminal: plain log lines unless asked otherwise (production: JSON).
export LOG_FORMAT="${LOG_FORMAT:-plain}"

$PY manage.py hub_local  # migrate, static files, the demo account's key, the admin login
cat <<EOT

Account:      http://127.0.0.1:${PORT}/account/  (sign up, or sign in as the demo account above)
Admin:        http://127.0.0.1:${PORT}/admin/    (the admin login above; its password is in ${HUB_VAR_DIR:-var}/admin_password)
API:          http://127.0.0.1:${PORT}/api/v1/models
Try:          curl http://127.0.0.1:${PORT}/api/v1/credits -H "Authorization: Bearer <the key above>"
More keys:    .venv/bin/python manage.py hub_createkey demo@example.com
Revoke one:   .venv/bin/python manage.py hub_revokekey gih_live_AbC4   (its display prefix)
Stop:         Ctrl-C
EOT

# The production processes (deploy/bin) with production's defaults: the worker (gevent, 1,000
# provider calls in flight unless CELERY_WORKER_CONCURRENCY says otherwise) and the web. Run as
# root, Celery warns the worker to drop privileges (--uid): advice for a server, where the image
# runs as uid 10001 — not for one's own machine, and the hub accepts JSON messages only, never pickle.
PYTHONWARNINGS="ignore:You're running the worker with superuser privileges" deploy/bin/worker &
worker=$!
HUB_BIND="127.0.0.1:${PORT}" WEB_GRACEFUL_TIMEOUT=10 deploy/bin/web &
web=$!

# Ctrl-C (or SIGTERM) is a clean stop: every process gets SIGTERM and is waited for, and the
# script exits 0, so `make run` ends without "make: *** Error". A web server that dies on its
# own ends the script with its status (and stops the others).
stop() {
    kill -TERM "$web" "$worker" 2>/dev/null || true
    wait "$web" "$worker" 2>/dev/null || true
}
trap stop EXIT
trap 'stop; exit 0' INT TERM
wait "$web"
