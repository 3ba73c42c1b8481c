"""Reference image uploads: the size-capped upload handler and content-based validation."""

import io
import os
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.test import RequestFactory, override_settings
from PIL import ExifTags, Image, ImageFile

from generations.references import reference_images_read
from generations.uploads import CappedTemporaryFileUploadHandler
from hub.http.errors import InvalidRequest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"IEND\xaeB`\x82"


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB", **save_args) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "red" if mode in ("RGB", "RGBA") else 0).save(out, format=fmt, **save_args)
    return out.getvalue()


def noisy_bytes(fmt: str, size: tuple[int, int] = (256, 256)) -> bytes:
    """Incompressible pixels, so cutting the file in half cuts into the pixel data."""
    out = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(out, format=fmt)
    return out.getvalue()


def upload(data: bytes, name: str = "ref.png", content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def read_one(data: bytes, name: str = "ref.png", content_type: str = "image/png") -> Image.Image:
    (png,) = [file.read() for file in reference_images_read([upload(data, name, content_type)])[0]]
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    image.load()
    return image


def rejected(data: bytes, name: str = "ref.png", content_type: str = "image/png") -> str:
    with pytest.raises(InvalidRequest) as caught:
        reference_images_read([upload(data, name, content_type)])
    return caught.value.message


NOT_AN_IMAGE = "reference_image 1 is not a valid PNG, JPEG or WebP image"


# --- accepted images ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "name", "content_type"),
    [("PNG", "a.png", "image/png"), ("JPEG", "a.jpg", "image/jpeg"), ("WEBP", "a.webp", "image/webp")],
)
def test_png_jpeg_webp_come_back_as_png_of_the_same_size(fmt: str, name: str, content_type: str) -> None:
    image = read_one(image_bytes(fmt, size=(64, 48)), name, content_type)
    assert image.size == (64, 48)
    assert image.mode == "RGB"


def test_type_comes_from_content_not_name_or_declared_type() -> None:
    image = read_one(image_bytes("JPEG"), name="photo.gif", content_type="text/plain")
    assert image.size == (64, 48)


def test_alpha_is_kept() -> None:
    image = read_one(image_bytes("PNG", mode="RGBA"))
    assert image.mode == "RGBA"


def test_several_files_of_both_upload_kinds_keep_their_order() -> None:
    on_disk = TemporaryUploadedFile("b.webp", "image/webp", 0, None)
    webp = image_bytes("WEBP", size=(10, 20))
    on_disk.write(webp)
    on_disk.size = len(webp)
    with on_disk:
        pngs = [file.read() for file in reference_images_read([upload(image_bytes("PNG", size=(30, 40))), on_disk])[0]]
    assert [Image.open(io.BytesIO(png)).size for png in pngs] == [(30, 40), (10, 20)]


def test_jpeg_exif_gps_is_stripped() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SecretCam"
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(
        {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.0)}
    )
    jpeg = image_bytes("JPEG", exif=exif)
    assert Image.open(io.BytesIO(jpeg)).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the input has GPS

    (png,) = [file.read() for file in reference_images_read([upload(jpeg, "a.jpg", "image/jpeg")])[0]]
    image = Image.open(io.BytesIO(png))
    assert "exif" not in image.info
    assert not image.getexif()
    assert b"eXIf" not in png and b"Exif" not in png and b"SecretCam" not in png


def test_exif_orientation_is_applied_before_stripping() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # "rotate 90° clockwise to display"
    image = read_one(image_bytes("JPEG", size=(60, 40), exif=exif), "a.jpg", "image/jpeg")
    assert image.size == (40, 60)


def test_bytes_appended_after_png_iend_are_dropped() -> None:
    payload = b"<?php system($_GET['c']); ?>" * 10
    (png,) = [file.read() for file in reference_images_read([upload(image_bytes("PNG") + payload)])[0]]
    assert payload not in png
    assert png.endswith(PNG_IEND)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animated_images_keep_the_first_frame_only(fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, format=fmt, save_all=True, append_images=frames[1:], lossless=True)
    image = read_one(out.getvalue())
    assert getattr(image, "n_frames", 1) == 1
    assert image.getpixel((8, 8))[:3] == (255, 0, 0)


# --- rejected files -------------------------------------------------------------------------


def test_text_named_png_and_declared_image_png_is_rejected() -> None:
    message = rejected(b"hello, I am definitely a PNG\n", "evil.png", "image/png")
    assert message == NOT_AN_IMAGE
    assert "hello" not in message


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_image_formats_are_rejected(fmt: str) -> None:
    assert rejected(image_bytes(fmt), "disguised.png", "image/png") == NOT_AN_IMAGE


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_images_are_rejected(fmt: str) -> None:
    data = noisy_bytes(fmt)
    assert rejected(data[: len(data) // 2]) == NOT_AN_IMAGE


def test_truncated_jpeg_passes_verify_but_not_load() -> None:
    """Why the code decodes with load(): verify() would have let this file through."""
    data = noisy_bytes("JPEG")
    Image.open(io.BytesIO(data[: len(data) // 2])).verify()
    assert rejected(data[: len(data) // 2]) == NOT_AN_IMAGE


def test_truncated_images_are_not_accepted_via_load_truncated_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImproperlyConfigured):
        reference_images_read([upload(image_bytes("PNG"))])


def test_empty_file_is_rejected() -> None:
    assert rejected(b"") == "reference_image 1 is empty"


def test_message_names_the_position_of_the_bad_file() -> None:
    with pytest.raises(InvalidRequest, match=r"^reference_image 2 is not a valid"):
        reference_images_read([upload(image_bytes("PNG")), upload(b"nope")])


@override_settings(REFERENCE_IMAGE_MAX_BYTES=1000)
def test_file_over_the_byte_cap_is_rejected() -> None:
    assert rejected(noisy_bytes("PNG", (32, 32))) == "reference_image 1 exceeds the 1000 bytes limit"


# --- decompression bombs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """1-bit PNGs of 8-48 KB (zlib tops out near 1000:1). 20000x20000 is past Pillow's own
    error threshold (2 * MAX_IMAGE_PIXELS); 8000x8000 is past REFERENCE_IMAGE_MAX_PIXELS (40M)
    but below where Pillow even warns, so only the hub's own check stands in its way."""
    return {
        "huge": image_bytes("PNG", (20000, 20000), mode="1"),
        "large": image_bytes("PNG", (8000, 8000), mode="1"),
    }


@override_settings(REFERENCE_IMAGE_MAX_PIXELS=40_000_000)  # the default, whatever the environment says
@pytest.mark.parametrize("bomb", ["huge", "large"])
def test_decompression_bomb_is_rejected_without_decoding(
    bomb: str, bombs: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(bombs[bomb]) < 64 * 1024

    def load_refused(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the bomb's pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load_refused)
    started = time.monotonic()
    message = rejected(bombs[bomb])
    assert time.monotonic() - started < 1
    assert message == "reference_image 1 is too large: more than 40000000 pixels"


@override_settings(REFERENCE_IMAGE_MAX_PIXELS=64 * 48 - 1)
def test_pixel_cap_comes_from_settings() -> None:
    assert "too large" in rejected(image_bytes("PNG", size=(64, 48)))


# --- the upload handler -----------------------------------------------------------------------


@override_settings(REFERENCE_IMAGE_MAX_BYTES=1000)
def test_handler_aborts_once_a_file_passes_the_cap_and_removes_its_temp_file() -> None:
    handler = CappedTemporaryFileUploadHandler()
    handler.new_file("reference_image", "big.png", "image/png", None)
    handler.receive_data_chunk(b"a" * 600, 0)
    path = handler.file.temporary_file_path()
    assert os.path.exists(path)

    with pytest.raises(InvalidRequest, match=r"^reference_image 'big.png' exceeds the 1000 bytes limit$"):
        handler.receive_data_chunk(b"a" * 600, 600)
    assert not os.path.exists(path)


@override_settings(REFERENCE_IMAGE_MAX_BYTES=1000)
def test_handler_streams_a_file_up_to_the_cap_to_disk() -> None:
    handler = CappedTemporaryFileUploadHandler()
    handler.new_file("reference_image", "ok.png", "image/png", None)
    chunks = [b"a" * 400, b"b" * 400, b"c" * 200]  # exactly at the cap: allowed
    start = 0
    for chunk in chunks:
        handler.receive_data_chunk(chunk, start)
        start += len(chunk)

    with handler.file_complete(start) as uploaded:
        assert isinstance(uploaded, TemporaryUploadedFile)
        assert os.path.isfile(uploaded.temporary_file_path())
        assert uploaded.size == 1000
        assert uploaded.read() == b"".join(chunks)


def test_configured_handlers_put_even_tiny_files_on_disk() -> None:
    png = image_bytes("PNG")
    request = RequestFactory().post("/api/v1/images/generations", {"reference_image": [upload(png), upload(png)]})
    files = request.FILES.getlist("reference_image")
    assert [type(f) for f in files] == [TemporaryUploadedFile, TemporaryUploadedFile]
    assert len(reference_images_read(files)[0]) == 2
    for f in files:
        f.close()


@override_settings(REFERENCE_IMAGE_MAX_BYTES=100 * 1024)
def test_request_parsing_stops_reading_at_an_oversized_file() -> None:
    request = RequestFactory().post(
        "/api/v1/images/generations", {"reference_image": upload(b"x" * (4 * 1024 * 1024), "huge.png")}
    )
    body = request.META["wsgi.input"]
    with pytest.raises(InvalidRequest, match=r"^reference_image 'huge.png' exceeds the 102400 bytes limit$"):
        request.FILES  # noqa: B018 — reading the property parses the body
    assert len(body) > 3 * 1024 * 1024  # most of the 4 MiB body was never read
