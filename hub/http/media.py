"""Embedded default only (no S3): the hub serves the generated images it stored itself.

Only through the signed, expiring URLs hub.infra.storage.object_url hands out; reference images
(user uploads) are never served. Errors answer in the API's JSON envelope.
"""

import time

from django.conf import settings
from django.http import Http404, JsonResponse
from django.views.static import serve

from hub.http.exception_handler import error_body
from hub.infra import backends, storage


def media(request, path: str):
    if backends.s3() or not path.startswith(storage.IMAGES_PREFIX):
        return _error(404, "notFound", "Resource not found")
    try:
        expires = int(request.GET.get("expires", ""))
    except ValueError:
        expires = None
    signature = request.GET.get("signature", "")
    if expires is None or not storage.local_url_signature_valid(path, expires=expires, signature=signature):
        return _error(403, "invalidSignature", "This image URL is not valid: use the URL the API returned.")
    if expires < time.time():
        return _error(403, "expiredUrl", "This image URL has expired: read the generation again for a fresh URL.")
    try:
        response = serve(request, path, document_root=settings.MEDIA_ROOT)
    except Http404:
        return _error(404, "notFound", "Resource not found")
    response["Cache-Control"] = f"private, max-age={max(int(expires - time.time()), 0)}"
    return response


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message, status=status), status=status)
