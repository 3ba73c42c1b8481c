"""Reference images: validate untrusted uploads by content and re-encode them as clean PNGs."""

import tempfile
import threading
from typing import IO

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import UploadedFile
from PIL import Image, ImageFile, ImageOps

from generations.uploads import too_large
from hub.http.errors import InvalidRequest

# Only these decoders ever see the bytes: the type is sniffed from the content, and files of
# any other type (GIF, BMP, TIFF, text, ...) fail to open at all.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")


# One decoded reference at a time per process: a decoded 40 MP image is ~160 MB, and a burst of
# upload requests must not multiply that (a thread, or a greenlet under gevent, waits its turn).
_decoding = threading.BoundedSemaphore(1)


def reference_images_read(
    files: list[UploadedFile], *, mask: UploadedFile | None = None
) -> tuple[list[IO[bytes]], IO[bytes] | None]:
    """Each upload decoded, EXIF-oriented and re-encoded as PNG (no metadata, no trailing bytes)
    into a temporary file, rewound: a request holds at most one decoded image in memory, never
    all the re-encoded ones (16 references of 50 MB would be gigabytes otherwise). And the
    `mask`, likewise, when there is one: (the images, the mask or None).

    Every file's header is checked first (type, pixels each and in sum; the mask's: a PNG with
    an alpha channel, the first image's size) before any is decoded, so a request that would be
    refused costs no decoding. Raises InvalidRequest naming the 1-based position of the first
    unacceptable file, or `mask`.
    """
    # Pillow reads this module-global flag deep inside its decoders; with it set, truncated
    # files decode "successfully" padded with grey, so refuse to run rather than accept them.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImproperlyConfigured("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")
    total = sum(_pixels(position, file) for position, file in enumerate(files, start=1))
    _total_check(total, param=_field(files[0]) if files else "")
    if mask is not None:
        _total_check(total + _mask_pixels(mask, first=files[0]), param="mask")
    images = [_png_from_upload(position, file) for position, file in enumerate(files, start=1)]
    return images, _png_from_upload(1, mask) if mask is not None else None


def _total_check(total: int, *, param: str) -> None:
    if total > settings.REFERENCE_IMAGE_MAX_TOTAL_PIXELS:
        raise InvalidRequest(
            f"The reference images are too large together: {total} pixels, at most "
            f"{settings.REFERENCE_IMAGE_MAX_TOTAL_PIXELS}",
            param=param,
        )


def _field(file: UploadedFile) -> str:
    return getattr(file, "field_name", None) or "reference_image"


def _errors(position: int, file: UploadedFile) -> tuple[InvalidRequest, InvalidRequest]:
    field = _field(file)
    label = f"{field} {position}"
    invalid = InvalidRequest(f"{label} is not a valid PNG, JPEG or WebP image", param=field)
    too_many_pixels = InvalidRequest(
        f"{label} is too large: more than {settings.REFERENCE_IMAGE_MAX_PIXELS} pixels", param=field
    )
    return invalid, too_many_pixels


def _pixels(position: int, file: UploadedFile) -> int:
    """The file's pixel count from its header alone (nothing decoded), within the per-image cap."""
    field = _field(file)
    label = f"{field} {position}"
    if not file.size:
        raise InvalidRequest(f"{label} is empty", param=field)
    if file.size > settings.REFERENCE_IMAGE_MAX_BYTES:
        raise too_large(label)
    invalid, too_many_pixels = _errors(position, file)
    file.seek(0)
    try:
        with Image.open(file, formats=ACCEPTED_FORMATS) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise too_many_pixels from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise invalid from None
    # Checked here, not by Pillow: it merely warns below 2 * MAX_IMAGE_PIXELS, and warning
    # filters are process-global.
    if width * height > settings.REFERENCE_IMAGE_MAX_PIXELS:
        raise too_many_pixels
    return width * height


def _mask_pixels(mask: UploadedFile, *, first: UploadedFile) -> int:
    """The mask's pixel count, from its header and the first image's (nothing decoded): a PNG
    whose alpha channel marks what to change, the first image's size."""
    invalid = InvalidRequest("The mask must be a PNG image with an alpha channel", param="mask")
    if not mask.size:
        raise InvalidRequest("The mask is empty", param="mask")
    if mask.size > settings.REFERENCE_IMAGE_MAX_BYTES:
        raise InvalidRequest(too_large("mask").message, param="mask")
    mask.seek(0)
    try:
        with Image.open(mask, formats=("PNG",)) as image:
            size, alpha = image.size, image.has_transparency_data
    except Image.DecompressionBombError:
        raise InvalidRequest(
            f"The mask is too large: more than {settings.REFERENCE_IMAGE_MAX_PIXELS} pixels", param="mask"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise invalid from None
    if not alpha:
        raise invalid
    first.seek(0)
    with Image.open(first, formats=ACCEPTED_FORMATS) as image:  # its header was checked already
        expected = image.size
    if size != expected:
        raise InvalidRequest(f"The mask must be the first image's size, {expected[0]}x{expected[1]}", param="mask")
    return size[0] * size[1]


def _png_from_upload(position: int, file: UploadedFile) -> IO[bytes]:
    invalid, too_many_pixels = _errors(position, file)
    file.seek(0)
    try:
        with _decoding, Image.open(file, formats=ACCEPTED_FORMATS) as image:
            # A full decode, not verify(): verify() passes e.g. a truncated JPEG. For animated
            # files this decodes the current frame, which right after open() is the first.
            image.load()
            upright = ImageOps.exif_transpose(image)
            clean = upright.convert("RGBA" if upright.has_transparency_data else "RGB")
            # Keep pixels only: no EXIF/GPS, text chunks or ICC profile reach the PNG.
            clean.info = {}
            out = tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)
            clean.save(out, format="PNG")
            out.seek(0)
            return out
    except Image.DecompressionBombError:
        raise too_many_pixels from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise invalid from None
