"""PutObject of the hub's own image keys as one PUT signed by botocore's S3 signer, on a
keep-alive urllib3 pool of the process.

Replaces: the S3 client's `put_object` (its event hooks, endpoint rules and response parsing),
~1 ms of CPU per image on top of the signature and the HTTP request (bench stages, against the
S3-protocol server), for hub.storage_backends.HubS3Storage._save. Signed in headers, not in the
query: urllib3 re-checks a URL byte by byte in Python, ~0.3 ms for a presigned one. The
signature covers the body's SHA-256, which S3 checks against what it receives. Failures raise
botocore's exceptions, as the client's would. Off, every upload is the client's put_object.
"""

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.httpsession import get_cert_path
from botocore.parsers import RestXMLParser

from hub.infra.fastpaths import FastPath

S3_PUT = FastPath("S3_PUT", "botocore", "1.44.18")

# Attempts of an upload after a connection failure or a 500/502/503/504 — as botocore's standard
# retry mode, which put_object uses.
UPLOAD_ATTEMPTS = 3


def upload_pool(config, verify: bool | str | None, *, maxsize: int) -> urllib3.PoolManager:
    """A pool with the client's timeouts (`config`: its botocore Config) and TLS verification
    (`verify`: AWS_S3_VERIFY, a CA bundle's path, or None for botocore's default, certifi)."""
    bundle = get_cert_path(verify if isinstance(verify, str) else True)
    return urllib3.PoolManager(
        maxsize=maxsize,
        timeout=urllib3.Timeout(connect=config.connect_timeout, read=config.read_timeout),
        retries=urllib3.Retry(
            total=UPLOAD_ATTEMPTS - 1,
            backoff_factor=0.5,
            status_forcelist=(500, 502, 503, 504),
            allowed_methods={"PUT"},
            raise_on_status=False,
        ),
        cert_reqs="CERT_NONE" if verify is False else "CERT_REQUIRED",
        ca_certs=None if verify is False else bundle,
    )


def put_signed(pool: urllib3.PoolManager, signer: tuple, key: str, body: bytes, content_type: str) -> None:
    """PUT `body` at `key` of the bucket; `signer`: (bucket URL, credentials, region), as
    HubS3Storage._presign_signer finds them."""
    prefix, credentials, region = signer
    request = AWSRequest(method="PUT", url=prefix + key, data=body, headers={"Content-Type": content_type})
    S3SigV4Auth(credentials.get_frozen_credentials(), "s3", region).add_auth(request)
    try:
        response = pool.request("PUT", request.url, body=body, headers=dict(request.headers.items()), redirect=False)
    except urllib3.exceptions.HTTPError as exc:
        raise EndpointConnectionError(endpoint_url=prefix, error=exc) from exc
    if response.status != 200:  # S3's error document, parsed as the client parses it
        raw = {"body": response.data, "headers": dict(response.headers), "status_code": response.status}
        raise ClientError(RestXMLParser().parse(raw, None), "PutObject")
