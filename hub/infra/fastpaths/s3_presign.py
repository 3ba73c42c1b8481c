"""Presigned GET URLs of the hub's own image keys signed by botocore's S3 query signer alone.

Replaces: the S3 client's `generate_presigned_url` — parameter validation, serialization, S3's
endpoint rules: ~40 % of a presign, and the hub presigns every image of every answer — for
hub.storage_backends.HubS3Storage.url. None of that depends on the key, so it runs once per
process for a probe key (HubS3Storage._presign_signer), and only the signature per URL. Off,
every URL is the client's.
"""

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest

from hub.infra.fastpaths import FastPath

S3_PRESIGN = FastPath("S3_PRESIGN", "botocore", "1.44.18")


def presigned_get(signer: tuple, key: str, *, expire: int) -> str:
    """The URL of a GET of `key`, valid `expire` seconds; `signer`: (bucket URL, credentials,
    region), as HubS3Storage._presign_signer finds them."""
    prefix, credentials, region = signer
    request = AWSRequest(method="GET", url=prefix + key)
    S3SigV4QueryAuth(credentials.get_frozen_credentials(), "s3", region, expires=expire).add_auth(request)
    return request.url
