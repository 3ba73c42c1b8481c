"""Where generated and reference images live: Django's default storage (local files or S3)."""

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage


def image_key(*, account_id: int, generation_id: str, index: int, ext: str = "png") -> str:
    return f"generations/{account_id}/{generation_id}/{index}.{ext}"


def reference_key(*, account_id: int, generation_id: str, index: int) -> str:
    return f"references/{account_id}/{generation_id}/{index}.png"


def object_save(*, key: str, data: bytes, content_type: str) -> str:
    """Store bytes under a deterministic key, overwriting what a previous attempt left there."""
    content = ContentFile(data)
    content.content_type = content_type  # read by the S3 backend for the object's Content-Type
    if not settings.USE_S3 and default_storage.exists(key):
        default_storage.delete(key)  # FileSystemStorage would otherwise pick a new name
    saved = default_storage.save(key, content)
    assert saved == key, f"storage renamed {key} to {saved}"
    return key


def object_read(key: str) -> bytes:
    with default_storage.open(key, "rb") as f:
        return f.read()


def object_url(key: str, *, base_url: str) -> str:
    """An absolute URL a client can fetch: presigned (S3), CDN, or served by the hub itself."""
    url = default_storage.url(key)
    if url.startswith("/"):
        return base_url.rstrip("/") + url
    return url


def object_delete(key: str) -> None:
    default_storage.delete(key)
