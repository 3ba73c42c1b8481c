"""Embedded default: the hub itself serves stored images at the URLs it hands out."""

import pytest
from django.test import override_settings

from hub import storage

LOCAL = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


@pytest.mark.django_db
def test_local_storage_urls_are_served(api, tmp_path):
    with override_settings(STORAGES=LOCAL, USE_S3=False, MEDIA_ROOT=str(tmp_path)):
        storage.object_save(key="generations/1/gen_x/0.png", data=b"\x89PNG fake", content_type="image/png")
        storage.object_save(key="generations/1/gen_x/0.png", data=b"\x89PNG newer", content_type="image/png")
        url = storage.object_url("generations/1/gen_x/0.png", base_url="http://testserver")
        assert url == "http://testserver/media/generations/1/gen_x/0.png"
        response = api.get(url.removeprefix("http://testserver"))
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == b"\x89PNG newer"
        escape = api.get("/media/../hub/settings.py")
        assert escape.status_code == 400  # SuspiciousFileOperation, never the file
        assert escape.json()["error"]["code"] == "invalid_request"


@pytest.mark.django_db
def test_media_route_is_off_when_images_live_in_s3(api):
    with override_settings(USE_S3=True):
        assert api.get("/media/generations/1/gen_x/0.png").status_code == 404
