"""Where generated and reference images live: Django's default storage (local files or S3).

Keys derive only from the generation's opaque id, so nothing in a URL counts users or
accounts. Images the hub serves itself (the embedded default, no S3) are fetched through
signed, expiring URLs — as S3's presigned ones are — checked by hub/http/media.py; reference
images are never served to anyone.
"""

import logging
import time
from typing import IO

from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.utils.http import urlencode

from hub.infra import backends

IMAGES_PREFIX = "generations/"
_MEDIA_SALT = "hub.media"

logger = logging.getLogger(__name__)


def image_key(*, generation_id: str, index: int, ext: str = "png") -> str:
    return f"{IMAGES_PREFIX}{generation_id}/{index}.{ext}"


def reference_key(*, generation_id: str, index: int) -> str:
    return f"references/{generation_id}/{index}.png"


def mask_key(*, generation_id: str) -> str:
    return f"references/{generation_id}/mask.png"


def object_save(*, key: str, data: bytes | IO[bytes], content_type: str) -> str:
    """Store bytes, or a file, under a deterministic key, overwriting what a previous attempt
    left there."""
    content = ContentFile(data) if isinstance(data, bytes) else File(data)
    content.content_type = content_type  # read by the S3 backend for the object's Content-Type
    if not backends.s3() and default_storage.exists(key):
        default_storage.delete(key)  # FileSystemStorage would otherwise pick a new name
    saved = default_storage.save(key, content)
    assert saved == key, f"storage renamed {key} to {saved}"
    return key


def object_read(key: str) -> bytes:
    with default_storage.open(key, "rb") as f:
        return f.read()


def object_url(key: str, *, base_url: str) -> str:
    """An absolute URL a client can fetch: presigned (S3), CDN, or served by the hub itself
    (then signed, valid for AWS_QUERYSTRING_EXPIRE seconds)."""
    url = default_storage.url(key)
    if url.startswith("/"):
        expires = int(time.time()) + settings.AWS_QUERYSTRING_EXPIRE
        query = urlencode({"expires": expires, "signature": local_url_signature(key, expires=expires)})
        return f"{base_url.rstrip('/')}{url}?{query}"
    return url


def local_url_signature(key: str, *, expires: int) -> str:
    """HMAC (SECRET_KEY) over the storage key and the expiry: a URL cannot be derived from
    another one, nor kept past its expiry."""
    return signing.Signer(salt=_MEDIA_SALT).signature(f"{key}\n{expires}")


def local_url_signature_valid(key: str, *, expires: int, signature: str) -> bool:
    """Checked in constant time, against SECRET_KEY and SECRET_KEY_FALLBACKS."""
    signer = signing.Signer(salt=_MEDIA_SALT)
    try:
        signer.unsign(f"{key}\n{expires}{signer.sep}{signature}")
    except signing.BadSignature:
        return False
    return True


def object_delete(key: str) -> None:
    default_storage.delete(key)


def warm_up() -> None:
    """Build now what the storage's first use builds — on S3 the boto3 client and the URL signer,
    ~50,000 objects and ~190 ms of CPU — so that a process makes them at start-up, before it
    freezes its start-up objects (hub.infra.gcfreeze), and not on its first request. A failure here is
    only logged: the first real use raises it where a caller handles it."""
    try:
        default_storage.url(image_key(generation_id="gen_warm_up", index=0))
    except Exception as exc:  # noqa: BLE001 — see above
        logger.warning("storage warm-up failed (the first use will retry): %s", exc)
