from django.conf import settings
from django.http import Http404
from django.views.static import serve


def media(request, path: str):
    """Embedded default only: the hub serves its own stored images (ids in paths are unguessable)."""
    if settings.USE_S3:
        raise Http404()
    return serve(request, path, document_root=settings.MEDIA_ROOT)
