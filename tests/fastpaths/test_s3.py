"""S3_PUT and S3_PRESIGN (hub/infra/fastpaths/s3_put.py, s3_presign.py): an image stored by the hub's
own signed PUT arrives at S3 as the client's PutObject sends it (method, path, body, type and
its hash, signed for the same scope), and is the same object; a presigned URL is the client's."""

import re
import socket
import threading
from urllib.parse import urlsplit

from django.core.files.base import ContentFile

from hub.infra.storage_backends import HubS3Storage
from tests.fastpaths.conftest import fast_path
from tests.storage.test_s3_storage import PNG, _same_second, http_get, options


class Recorder:
    """A loopback TCP relay to the S3 server that keeps the bytes each connection sent it."""

    def __init__(self, target: str):
        parts = urlsplit(target)
        self.target = (parts.hostname, parts.port)
        self.sent: list[bytearray] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            record = bytearray()
            self.sent.append(record)
            threading.Thread(target=_pipe, args=(client, upstream, record), daemon=True).start()
            threading.Thread(target=_pipe, args=(upstream, client, None), daemon=True).start()

    def requests(self) -> list[tuple[str, dict, bytes]]:
        """Each request sent so far: its request line, headers (lower-cased names) and body."""
        found = []
        for stream in self.sent:
            data = bytes(stream)
            while data:
                head, _, data = data.partition(b"\r\n\r\n")
                line, *header_lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
                length = int(headers.get("content-length", 0))
                found.append((line, headers, data[:length]))
                data = data[length:]
        return found

    def close(self):
        self._server.close()


def _pipe(source, sink, record):
    try:
        while chunk := source.recv(65536):
            if record is not None:
                record += chunk
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        sink.close()


def _put(endpoint, bucket, on: bool, key: str):
    recorder = Recorder(endpoint)
    try:
        with fast_path("S3_PUT", on):
            storage = HubS3Storage(**options(recorder.url, bucket))
            storage.save(key, ContentFile(PNG))
        ((line, headers, body),) = [r for r in recorder.requests() if r[0].startswith("PUT ")]
        return line, headers, body
    finally:
        recorder.close()


def _scope(authorization: str) -> str:
    """`AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/s3/aws4_request`: the scope signed for."""
    return re.match(r"AWS4-HMAC-SHA256 Credential=([^,]+),", authorization).group(1)


def test_an_image_arrives_at_s3_as_the_clients_put_object(endpoint, bucket, s3):
    fast_key, library_key = "generations/gen_fast/0.png", "generations/gen_library/0.png"
    fast, library = _put(endpoint, bucket, True, fast_key), _put(endpoint, bucket, False, library_key)
    assert fast[0] == f"PUT /{bucket}/{fast_key} HTTP/1.1" and library[0] == f"PUT /{bucket}/{library_key} HTTP/1.1"
    assert fast[2] == library[2] == PNG
    for name in ("content-type", "x-amz-content-sha256", "content-length"):
        assert fast[1][name] == library[1][name], name
    assert _scope(fast[1]["authorization"]) == _scope(library[1]["authorization"])
    stored = [s3.get_object(Bucket=bucket, Key=key) for key in (fast_key, library_key)]
    assert [(o["Body"].read(), o["ContentType"], o["ETag"]) for o in stored] == [
        (PNG, "image/png", stored[0]["ETag"])
    ] * 2


def test_a_presigned_url_is_the_clients(endpoint, bucket, s3):
    storage = HubS3Storage(**options(endpoint, bucket, querystring_expire=900))
    key = "generations/gen_AbC123-x_y/0.png"
    storage.save(key, ContentFile(PNG))

    def both():
        with fast_path("S3_PRESIGN", True):
            fast = storage.url(key)
        with fast_path("S3_PRESIGN", False):
            return fast, storage.url(key)

    fast, library = _same_second(both)
    assert fast == library
    assert http_get(fast) == PNG
