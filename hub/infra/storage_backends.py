"""The S3 backend for generated images, for AWS and for S3-compatible servers."""

import os
import posixpath
import re
import threading
from urllib.parse import urlsplit, urlunsplit

import urllib3
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.httpsession import get_cert_path
from botocore.parsers import RestXMLParser
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from hub.infra.proxies import proxied

# S3 rejects SigV4 presigned URLs valid for longer than 7 days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

# Kept-alive connections to the object store per process.
S3_POOL_CONNECTIONS = 128

# Keys that botocore puts into a URL path as they are (the hub's own keys): presigned through
# the per-process shortcut (HubS3Storage._presign_signer); any other key takes the client's path.
PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")
PROBE_KEY = "hub-presign-probe"

# Attempts of an upload signed here (HubS3Storage._save) after a connection failure or a
# 500/502/503/504 — as botocore's standard retry mode, which put_object uses.
UPLOAD_ATTEMPTS = 3

IMAGE_CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}


class HubS3Storage(S3Storage):
    def get_default_settings(self):
        defaults = super().get_default_settings()
        # Without this botocore still presigns SigV2 URLs in us-east-1.
        defaults["signature_version"] = defaults["signature_version"] or "s3v4"
        return defaults

    def __init__(self, **settings):
        super().__init__(**settings)
        self._resources = {}  # (process, OS thread) → boto3 S3 resource
        self._presign = None  # (process, signer or None): _presign_signer
        self._uploads = None  # (process, urllib3 pool or None): _upload_pool
        # One client serves every greenlet of a process (connection, below): with botocore's
        # default pool of 10, the eleventh upload at once opens a connection and throws it away
        # after one request (bench sync-c32-0s: a TCP connect on most uploads).
        self.client_config = Config(max_pool_connections=S3_POOL_CONNECTIONS).merge(self.client_config)
        if self.endpoint_url:
            # Recent botocore sends CRC checksums on every upload, which some S3-compatible
            # servers reject. Merged underneath so an explicit client_config still wins, and
            # the Config S3Storage built from signature_version/addressing_style is kept.
            self.client_config = Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ).merge(self.client_config)

    @property
    def connection(self):
        """One boto3 resource per OS thread, not per `threading.local` as django-storages
        keeps it: under gevent that local is per greenlet, i.e. per request, and each new
        resource costs ~100 ms of CPU (a boto3 session, its loaders and endpoint data).
        Greenlets of one thread take turns only at I/O, which is as safe as one thread."""
        key = (os.getpid(), threading.get_native_id())
        resource = self._resources.get(key)
        if resource is None:
            resource = self._resources[key] = S3Storage.connection.fget(self)
        return resource

    def _save(self, name, content):
        """One PUT of the whole object (one object in memory at a time). django-storages'
        upload_fileobj goes through s3transfer's thread pool and builds a boto3 resource per
        object — ~10 ms of CPU for an image that fits one request anyway.

        The hub's own keys, with no write parameter but the content type, go as a PUT signed
        here (_put_signed); anything else — and any host reached through a proxy — as the
        client's PutObject."""
        cleaned = clean_name(name)
        key = self._normalize_name(cleaned)
        content.seek(0)
        body = content.read()
        params = self._get_write_parameters(key, content)
        # django-storages always sets ContentType (from the content, the name or its default)
        pool = self._upload_pool() if PLAIN_KEY.fullmatch(key) and params.keys() == {"ContentType"} else None
        if pool is not None:
            self._put_signed(pool, key, body, params["ContentType"])
        else:
            self.connection.meta.client.put_object(Bucket=self.bucket_name, Key=key, Body=body, **params)
        return cleaned

    def _put_signed(self, pool: urllib3.PoolManager, key: str, body: bytes, content_type: str) -> None:
        """PutObject without the client's machinery: the request signed by botocore's own S3
        signer and sent on a keep-alive pool of this process. The client's path — its event
        hooks, endpoint rules and response parsing — cost ~1 ms of CPU per image on top of the
        signature and the HTTP request (bench stages, against the S3-protocol server). Signed in
        headers, not in the query: urllib3 re-checks a URL byte by byte in Python, ~0.3 ms for a
        presigned one. The signature covers the body's SHA-256, which S3 checks against what it
        receives. Failures raise botocore's exceptions, as the client's would."""
        prefix, credentials, region = self._presign_signer()
        request = AWSRequest(method="PUT", url=prefix + key, data=body, headers={"Content-Type": content_type})
        S3SigV4Auth(credentials.get_frozen_credentials(), "s3", region).add_auth(request)
        try:
            response = pool.request(
                "PUT", request.url, body=body, headers=dict(request.headers.items()), redirect=False
            )
        except urllib3.exceptions.HTTPError as exc:
            raise EndpointConnectionError(endpoint_url=prefix, error=exc) from exc
        if response.status != 200:  # S3's error document, parsed as the client parses it
            raw = {"body": response.data, "headers": dict(response.headers), "status_code": response.status}
            raise ClientError(RestXMLParser().parse(raw, None), "PutObject")

    def _upload_pool(self) -> urllib3.PoolManager | None:
        """The process's connection pool for uploads signed here, with the client's timeouts and
        TLS verification (AWS_S3_VERIFY); made after a fork, never inherited from the parent.
        None when the client's path must upload: no signer (no credentials, an unusual endpoint
        shape) or a proxy, which the client honours (AWS_S3_PROXIES, HTTP(S)_PROXY and NO_PROXY,
        read once per process as the client reads them) and a plain pool does not."""
        if self._uploads is None or self._uploads[0] != os.getpid():
            signer = self._presign_signer()
            if signer is None or self.proxies or proxied(signer[0]):
                self._uploads = (os.getpid(), None)
                return None
            config = self.connection.meta.client.meta.config
            bundle = get_cert_path(self.verify if isinstance(self.verify, str) else True)  # botocore's default: certifi
            pool = urllib3.PoolManager(
                maxsize=S3_POOL_CONNECTIONS,
                timeout=urllib3.Timeout(connect=config.connect_timeout, read=config.read_timeout),
                retries=urllib3.Retry(
                    total=UPLOAD_ATTEMPTS - 1,
                    backoff_factor=0.5,
                    status_forcelist=(500, 502, 503, 504),
                    allowed_methods={"PUT"},
                    raise_on_status=False,
                ),
                cert_reqs="CERT_NONE" if self.verify is False else "CERT_REQUIRED",
                ca_certs=None if self.verify is False else bundle,
            )
            self._uploads = (os.getpid(), pool)
        return self._uploads[1]

    def _get_write_parameters(self, name, content=None):
        params = super()._get_write_parameters(name, content)
        params.pop("ACL", None)  # images are private; they are served by presigned URL or CDN
        explicit = getattr(content, "content_type", None) or "ContentType" in self.object_parameters
        if not explicit:
            # mimetypes' answer (e.g. for .webp) depends on the host's mime.types
            ext = posixpath.splitext(name)[1].lower()
            params["ContentType"] = IMAGE_CONTENT_TYPES.get(ext, params["ContentType"])
        return params

    def url(self, name, parameters=None, expire=None, http_method=None):
        if expire is None:
            expire = self.querystring_expire
        expire = min(expire, MAX_PRESIGN_SECONDS)
        key = self._normalize_name(clean_name(name))
        plain = parameters is None and http_method is None and self.querystring_auth and not self.custom_domain
        signer = self._presign_signer() if plain and PLAIN_KEY.fullmatch(key) else None
        if signer is None:
            return super().url(name, parameters, expire, http_method)
        prefix, credentials, region = signer
        request = AWSRequest(method="GET", url=prefix + key)
        S3SigV4QueryAuth(credentials.get_frozen_credentials(), "s3", region, expires=expire).add_auth(request)
        return request.url

    def _presign_signer(self):
        """(bucket URL, credentials, region) to presign a GET of a plain key as the client's
        generate_presigned_url does, by botocore's own S3 query signer; None to leave it to the
        client. The client's path — parameter validation, serialization, S3's endpoint rules —
        made up ~40 % of a presign, and the hub presigns every image of every answer; none of it
        depends on the key, so it runs once per process (for a probe key), and only the signature
        per URL. tests/storage/test_s3_storage.py holds the two URLs equal. The uploads of plain
        keys are signed for the same bucket URL (_put_signed)."""
        if self._presign is None or self._presign[0] != os.getpid():
            client = self.connection.meta.client
            probe = urlsplit(
                client.generate_presigned_url("get_object", Params={"Bucket": self.bucket_name, "Key": PROBE_KEY})
            )
            credentials = self._create_session().get_credentials()
            signer = None
            if probe.path.endswith("/" + PROBE_KEY) and credentials is not None:
                prefix = urlunsplit((probe.scheme, probe.netloc, probe.path[: -len(PROBE_KEY)], "", ""))
                signer = (prefix, credentials, client.meta.region_name)
            self._presign = (os.getpid(), signer)
        return self._presign[1]
