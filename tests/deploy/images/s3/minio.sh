#!/bin/sh
# `minio server DIR [--address :PORT]` → moto's S3 server on that port (in memory: test only).
set -eu
port=9000
while [ $# -gt 0 ]; do
    case "$1" in
        --address) port="${2##*:}"; shift 2 ;;
        *) shift ;;
    esac
done
exec /opt/moto/bin/moto_server -H 0.0.0.0 -p "$port"
