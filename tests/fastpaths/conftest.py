"""Each fast path (hub/infra/fastpaths) is run both ways — its own, and the library's — and what users
see must be the same."""

from contextlib import contextmanager

import pytest
from django.conf import settings
from django.test import override_settings

# The S3-protocol server and a bucket, for test_s3.py.
from tests.storage.test_s3_storage import bucket, endpoint, fake_aws_env, s3  # noqa: F401


@contextmanager
def fast_path(name: str, on: bool):
    """The fast path `name` switched on or off (HUB_FAST_PATH_<NAME>) for the block."""
    with override_settings(FAST_PATH_SWITCHES={**settings.FAST_PATH_SWITCHES, name: on}):
        yield


@pytest.fixture(autouse=True)
def _fast_paths_on_by_default():
    """The suite may run with HUB_FAST_PATHS=false (deploy/test.sh's second run); these tests
    compare both ways, so the master switch is on for them."""
    with override_settings(FAST_PATHS=True):
        yield
