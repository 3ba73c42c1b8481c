#!/bin/sh
# `mc ready local` → exit 0 once the S3 server on :9000 answers.
exec /opt/moto/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9000/moto-api/', timeout=3)"
