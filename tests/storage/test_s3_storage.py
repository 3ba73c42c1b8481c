"""HubS3Storage against a real S3-protocol server (moto) on loopback; no database needed."""

import hashlib
import socket
import urllib.request
import uuid
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.exceptions
import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import override_settings
from moto.server import ThreadedMotoServer

from hub.infra import storage as helpers
from hub.infra.storage_backends import HubS3Storage

KEYS = {"access_key": "testing-key", "secret_key": "testing-secret"}
PNG = b"\x89PNG\r\n\x1a\n" + b"fake image bytes"


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch):
    # Keep boto3 away from any real credentials, profiles or endpoint overrides on the host.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEYS["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", KEYS["secret_key"])
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEYS["access_key"],
        aws_secret_access_key=KEYS["secret_key"],
    )


@pytest.fixture
def bucket(s3):
    name = f"hub-{uuid.uuid4().hex[:12]}"  # a fresh private bucket per test
    s3.create_bucket(Bucket=name)
    return name


def options(endpoint, bucket, **overrides):
    return {
        "bucket_name": bucket,
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": 3600,
        "file_overwrite": True,
        "signature_version": "s3v4",
        "addressing_style": "path",
        **KEYS,
        **overrides,
    }


def http_get(url):
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=10) as resp:
        return resp.read()


def client_puts(storage) -> list[dict]:
    """The headers of every PutObject the storage's boto3 client sends from now on."""
    sent = []
    storage.connection.meta.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **kw: sent.append(dict(request.headers))
    )
    return sent


@pytest.mark.parametrize("ext, content_type", [("png", "image/png"), ("jpg", "image/jpeg"), ("webp", "image/webp")])
def test_save_sets_image_type(endpoint, bucket, s3, ext, content_type):
    storage = HubS3Storage(**options(endpoint, bucket))
    key = f"generations/1/gen_x/0.{ext}"

    assert storage.save(key, ContentFile(PNG)) == key

    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == content_type
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == PNG


def test_the_hubs_keys_are_put_by_its_own_signed_request_not_by_the_client(endpoint, bucket, s3):
    storage = HubS3Storage(**options(endpoint, bucket))
    through_client = client_puts(storage)
    key = "references/gen_AbC123-x_y/0.png"

    storage.save(key, ContentFile(PNG))

    assert through_client == []
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == PNG


def test_other_uploads_take_the_clients_put_object_without_checksum_headers(endpoint, bucket, s3):
    storage = HubS3Storage(**options(endpoint, bucket, object_parameters={"CacheControl": "max-age=60"}))
    through_client = client_puts(storage)
    key = "generations/1/gen_x/0.png"

    storage.save(key, ContentFile(PNG))
    storage.save("odd key/with space+plus.png", ContentFile(PNG))

    assert len(through_client) == 2
    checksum_headers = ("x-amz-checksum", "x-amz-sdk-checksum")
    assert not [h for headers in through_client for h in headers if h.lower().startswith(checksum_headers)]
    assert s3.head_object(Bucket=bucket, Key=key)["CacheControl"] == "max-age=60"
    assert s3.get_object(Bucket=bucket, Key="odd key/with space+plus.png")["Body"].read() == PNG


def test_through_a_proxy_uploads_take_the_clients_path(endpoint, bucket, monkeypatch):
    """A plain connection pool does not honour HTTP(S)_PROXY as the client does: the client uploads."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens: the client's upload fails there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    storage = HubS3Storage(**options(endpoint, bucket))
    through_client = client_puts(storage)  # the client reads the proxies when it is made
    with pytest.raises(botocore.exceptions.BotoCoreError):
        storage.save("generations/1/gen_x/0.png", ContentFile(PNG))
    assert through_client  # the client's attempts (it retries)

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    storage = HubS3Storage(**options(endpoint, bucket))
    through_client = client_puts(storage)
    storage.save("generations/1/gen_x/1.png", ContentFile(PNG))
    assert through_client == []


def test_a_refused_upload_raises_the_clients_error(endpoint, s3):
    storage = HubS3Storage(**options(endpoint, f"hub-missing-{uuid.uuid4().hex[:8]}"))

    with pytest.raises(botocore.exceptions.ClientError) as refused:
        storage.save("generations/1/gen_x/0.png", ContentFile(PNG))

    assert refused.value.response["Error"]["Code"] == "NoSuchBucket"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_an_unreachable_store_raises_the_clients_connection_error(bucket):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    storage = HubS3Storage(**options(f"http://127.0.0.1:{port}", bucket))

    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        storage.save("generations/1/gen_x/0.png", ContentFile(PNG))


def test_the_upload_is_signed_over_the_bodys_hash(endpoint, bucket, s3, monkeypatch):
    """S3 refuses a body whose SHA-256 is not the signed one; the S3-protocol server here checks no
    signatures, so the test reads what is sent."""
    storage = HubS3Storage(**options(endpoint, bucket))
    pool = storage._upload_pool()
    real_request = pool.request
    sent = []

    def recording(method, url, **kwargs):
        sent.append((method, url, kwargs["headers"]))
        return real_request(method, url, **kwargs)

    monkeypatch.setattr(pool, "request", recording)
    storage.save("generations/1/gen_x/0.png", ContentFile(PNG))

    [(method, url, headers)] = sent
    assert (method, url) == ("PUT", f"{endpoint}/{bucket}/generations/1/gen_x/0.png")
    assert headers["Content-Type"] == "image/png"
    assert headers["X-Amz-Content-SHA256"] == hashlib.sha256(PNG).hexdigest()
    authorization = headers["Authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={KEYS['access_key']}/")
    assert "/us-east-1/s3/aws4_request, SignedHeaders=" in authorization
    assert "x-amz-content-sha256" in authorization
    assert s3.get_object(Bucket=bucket, Key="generations/1/gen_x/0.png")["Body"].read() == PNG


def test_content_type_from_content_wins(endpoint, bucket, s3):
    storage = HubS3Storage(**options(endpoint, bucket))
    content = ContentFile(PNG)
    content.content_type = "image/jpeg"

    storage.save("generations/1/gen_x/0.png", content)

    head = s3.head_object(Bucket=bucket, Key="generations/1/gen_x/0.png")
    assert head["ContentType"] == "image/jpeg"


def test_url_is_path_style_sigv4_presign_that_downloads(endpoint, bucket):
    storage = HubS3Storage(**options(endpoint, bucket, querystring_expire=900))
    key = "generations/1/gen_x/0.png"
    storage.save(key, ContentFile(PNG))

    url = storage.url(key)

    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == endpoint
    assert parts.path == f"/{bucket}/{key}"
    query = parse_qs(parts.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Credential"][0].startswith(f"{KEYS['access_key']}/")
    assert query["X-Amz-Credential"][0].endswith("/us-east-1/s3/aws4_request")
    assert query["X-Amz-Signature"][0]
    assert query["X-Amz-Expires"] == ["900"]
    assert "Signature" not in query and "AWSAccessKeyId" not in query  # not SigV2
    assert http_get(url) == PNG


def test_presign_lifetime_is_clamped_to_seven_days(endpoint, bucket):
    storage = HubS3Storage(**options(endpoint, bucket, querystring_expire=30 * 24 * 3600))

    url = storage.url("generations/1/gen_x/0.png")
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["604800"]
    url = storage.url("generations/1/gen_x/0.png", expire=10**9)
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["604800"]


def test_saving_same_key_twice_overwrites(endpoint, bucket, s3):
    storage = HubS3Storage(**options(endpoint, bucket))
    key = "generations/1/gen_x/0.png"

    assert storage.save(key, ContentFile(b"first attempt")) == key
    assert storage.save(key, ContentFile(b"second attempt")) == key

    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [obj["Key"] for obj in listed] == [key]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"second attempt"


def test_custom_domain_url_is_unsigned(endpoint, bucket):
    storage = HubS3Storage(**options(endpoint, bucket, custom_domain="cdn.example.com", querystring_auth=False))

    url = storage.url("generations/1/gen_x/0.png")

    assert url == "https://cdn.example.com/generations/1/gen_x/0.png"


def test_objects_and_bucket_are_private(endpoint, bucket, s3):
    # Even a configured public ACL must not reach S3.
    storage = HubS3Storage(**options(endpoint, bucket, default_acl="public-read"))
    key = "generations/1/gen_x/0.png"
    storage.save(key, ContentFile(PNG))

    for acl in (s3.get_object_acl(Bucket=bucket, Key=key), s3.get_bucket_acl(Bucket=bucket)):
        owner_id = acl["Owner"]["ID"]
        assert [(g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"]] == [(owner_id, "FULL_CONTROL")]


def test_workers_storage_helpers_use_s3_backend(endpoint, bucket, s3):
    stores = {
        "default": {
            "BACKEND": "hub.infra.storage_backends.HubS3Storage",
            "OPTIONS": options(endpoint, bucket),
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    key = helpers.image_key(generation_id="gen_abc", index=0)
    # override_settings(STORAGES=...) fires Django's storages_changed signal, which drops the
    # cached default_storage on entry and on exit.
    with override_settings(STORAGES=stores, USE_S3=True):
        assert isinstance(default_storage, HubS3Storage)
        assert default_storage.bucket_name == bucket

        assert helpers.object_save(key=key, data=PNG, content_type="image/png") == key
        assert helpers.object_read(key) == PNG
        url = helpers.object_url(key, base_url="http://hub.invalid")

    assert s3.head_object(Bucket=bucket, Key=key)["ContentType"] == "image/png"
    assert url.startswith(f"{endpoint}/{bucket}/{key}?")
    assert http_get(url) == PNG


@pytest.mark.skipif(not settings.USE_S3, reason="the hub's own storage is S3 only with AWS_STORAGE_BUCKET_NAME set")
def test_one_client_keeps_as_many_connections_as_uploads_at_once():
    """Every greenlet of a process shares one client: its pool must not be botocore's 10."""
    from django.core.files.storage import default_storage

    from hub.infra.storage_backends import S3_POOL_CONNECTIONS

    client = default_storage.connection.meta.client
    assert client.meta.config.max_pool_connections == S3_POOL_CONNECTIONS >= 100
    assert client.meta.config.request_checksum_calculation == "when_required"  # the endpoint's merge kept


def _same_second(make_both):
    """Two presigned URLs made in one second (X-Amz-Date has second resolution)."""
    for _ in range(5):
        first, second = make_both()
        if parse_qs(urlsplit(first).query)["X-Amz-Date"] == parse_qs(urlsplit(second).query)["X-Amz-Date"]:
            return first, second
    raise AssertionError("no two presigns within one second")


@pytest.mark.parametrize(
    "config",
    [
        {},  # the S3-protocol server: path-style
        {"endpoint_url": None, "addressing_style": None, "region_name": "eu-west-1"},  # AWS: virtual-hosted
        {"endpoint_url": None, "addressing_style": None, "region_name": "us-east-1"},
    ],
)
def test_the_presign_shortcut_makes_the_clients_url(endpoint, bucket, config):
    storage = HubS3Storage(**{**options(endpoint, bucket, querystring_expire=900), **config})
    client = storage.connection.meta.client
    key = "generations/gen_AbC123-x_y/0.png"

    def both():
        ours = storage.url(key)
        return ours, client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=900)

    ours, clients = _same_second(both)
    assert ours == clients
    assert parse_qs(urlsplit(ours).query)["X-Amz-Expires"] == ["900"]


def test_other_keys_and_parameters_take_the_clients_path(endpoint, bucket):
    storage = HubS3Storage(**options(endpoint, bucket))
    client = storage.connection.meta.client
    for key, parameters in (
        ("odd key/with space+plus.png", None),
        ("generations/a.png", {"ResponseContentType": "x/y"}),
    ):

        def both(key=key, parameters=parameters):
            ours = storage.url(key, parameters=parameters)
            params = {"Bucket": bucket, "Key": key, **(parameters or {})}
            return ours, client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=storage.querystring_expire
            )

        ours, clients = _same_second(both)
        assert ours == clients
