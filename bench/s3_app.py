"""moto's S3 as a WSGI app, for the bench's S3-protocol server (bench.stack).

`moto_server` serves it with werkzeug's development server, which closes the connection after
every response: each upload would pay a new TCP connection (and, under gevent, a resolver
thread hop) that S3 itself — which keeps connections alive — never charges. The bench serves
this app with gunicorn's threaded worker instead, keep-alive on, in one process (moto keeps its
buckets in memory).
"""

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

application = DomainDispatcherApplication(create_backend_app)
