import pytest
from django.conf import settings

from tests.deploy.containers import Dockerd


@pytest.fixture(scope="session")
def dockerd():
    """The Docker daemon (started here when none runs; stopped again at the end)."""
    daemon = Dockerd(settings.VAR_DIR).start()
    yield daemon
    daemon.stop()
