"""Reference images: validate untrusted uploads by content and re-encode them as clean PNGs."""

import io

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import UploadedFile
from PIL import Image, ImageFile, ImageOps

from generations.uploads import too_large
from hub.errors import InvalidRequest

# Only these decoders ever see the bytes: the type is sniffed from the content, and files of
# any other type (GIF, BMP, TIFF, text, ...) fail to open at all.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")


def reference_images_read(files: list[UploadedFile]) -> list[bytes]:
    """Each upload decoded, EXIF-oriented and re-encoded as PNG (no metadata, no trailing bytes).

    Raises InvalidRequest naming the 1-based position of the first unacceptable file.
    """
    # Pillow reads this module-global flag deep inside its decoders; with it set, truncated
    # files decode "successfully" padded with grey, so refuse to run rather than accept them.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImproperlyConfigured("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")
    return [_png_from_upload(position, file) for position, file in enumerate(files, start=1)]


def _png_from_upload(position: int, file: UploadedFile) -> bytes:
    field = getattr(file, "field_name", None) or "reference_image"
    label = f"{field} {position}"
    if not file.size:
        raise InvalidRequest(f"{label} is empty", param=field)
    if file.size > settings.REFERENCE_IMAGE_MAX_BYTES:
        raise too_large(label)
    invalid = InvalidRequest(f"{label} is not a valid PNG, JPEG or WebP image", param=field)
    too_many_pixels = InvalidRequest(
        f"{label} is too large: more than {settings.REFERENCE_IMAGE_MAX_PIXELS} pixels", param=field
    )
    file.seek(0)
    try:
        with Image.open(file, formats=ACCEPTED_FORMATS) as image:
            # open() parsed the header only. Check the size ourselves before decoding: Pillow
            # merely warns below 2 * MAX_IMAGE_PIXELS, and warning filters are process-global.
            width, height = image.size
            if width * height > settings.REFERENCE_IMAGE_MAX_PIXELS:
                raise too_many_pixels
            # A full decode, not verify(): verify() passes e.g. a truncated JPEG. For animated
            # files this decodes the current frame, which right after open() is the first.
            image.load()
            upright = ImageOps.exif_transpose(image)
            clean = upright.convert("RGBA" if upright.has_transparency_data else "RGB")
            # Keep pixels only: no EXIF/GPS, text chunks or ICC profile reach the PNG.
            clean.info = {}
            out = io.BytesIO()
            clean.save(out, format="PNG")
            return out.getvalue()
    except Image.DecompressionBombError:
        raise too_many_pixels from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise invalid from None
