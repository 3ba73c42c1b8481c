"""Upload handling: every file streams to disk, and no single file may pass the size cap."""

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler

from hub.http.errors import InvalidRequest


def size_limit_text(max_bytes: int) -> str:
    """'50 MB' for the real cap; exact bytes for the small caps tests use."""
    mib = 1024 * 1024
    return f"{max_bytes // mib} MB" if max_bytes % mib == 0 else f"{max_bytes} bytes"


def too_large(label: str) -> InvalidRequest:
    return InvalidRequest(f"{label} exceeds the {size_limit_text(settings.REFERENCE_IMAGE_MAX_BYTES)} limit")


class CappedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """A TemporaryFileUploadHandler that aborts the request once one file passes the cap.

    Django caps no file's size by itself: DATA_UPLOAD_MAX_MEMORY_SIZE excludes file parts.
    """

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if start + len(raw_data) > settings.REFERENCE_IMAGE_MAX_BYTES:
            # Django only calls upload_interrupted() for StopUpload, so remove the partial
            # temporary file here before the error propagates out of request parsing.
            self.upload_interrupted()
            raise too_large(f"{self.field_name} '{self.file_name}'")
        return super().receive_data_chunk(raw_data, start)
