"""Test settings: the production settings, with a fast password hasher.

PBKDF2 costs ~0.3 s of CPU per password by design; tests create hundreds of users.
"""

from hub.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Tests edit the catalog directly and expect to see it at once.
CATALOG_CACHE_SECONDS = 0

# The tests' webhook receivers listen on loopback (production refuses it; tests/webhooks checks
# the refusal with this turned off).
WEBHOOK_ALLOW_LOOPBACK = True

# Encrypts the upstreams' credentials (on PostgreSQL the hub refuses them without a key); the
# worker processes the tests start read these same settings.
UPSTREAM_KEYS = ["bvvfiIw7LbVcMpu0onQqMI-I6nMu1zrbCb8os81EBxo="]
