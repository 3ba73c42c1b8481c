"""Upstream credentials, encrypted at rest with MultiFernet: HUB_UPSTREAM_KEYS' first key
encrypts, every one decrypts, so keys rotate (`hub_upstream rotate-keys`). The embedded default
(SQLite) keeps a local key in var/ when none is set, as it keeps its other local secrets. A
credential is shown only as its hint (`sk-…abcd`), and never logged."""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

KEYS_MISSING = (
    "HUB_UPSTREAM_KEYS is not set: it encrypts the upstreams' credentials on a PostgreSQL database"
    " (comma-separated Fernet keys, the first encrypts; see docs/operations.md#upstreams)"
)


class CredentialsLocked(ImproperlyConfigured):
    """No key to encrypt with, or none of the keys decrypts a stored credential."""


def _local_key() -> str:
    path = settings.VAR_DIR / "upstream_key"
    if not path.exists():
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return path.read_text().strip()


def _keys() -> tuple[str, ...]:
    if settings.UPSTREAM_KEYS:
        return tuple(settings.UPSTREAM_KEYS)
    if settings.SHARED_DATABASE:
        raise CredentialsLocked(KEYS_MISSING)
    return (_local_key(),)


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def credential_seal(raw: str) -> str:
    return _fernet(_keys()).encrypt(raw.encode()).decode()


def credential_open(token: str) -> str:
    try:
        return _fernet(_keys()).decrypt(token.encode()).decode()
    except InvalidToken:
        raise CredentialsLocked(
            "No key of HUB_UPSTREAM_KEYS decrypts this credential (was the key that encrypted it removed?)"
        ) from None


def credential_reseal(token: str) -> str:
    """The credential encrypted again with the first key (MultiFernet.rotate)."""
    try:
        return _fernet(_keys()).rotate(token.encode()).decode()
    except InvalidToken:
        raise CredentialsLocked("No key of HUB_UPSTREAM_KEYS decrypts this credential") from None


def credential_hint(raw: str) -> str:
    """What is ever shown of a credential: its first three and last four characters of one long
    enough for that to leave most of it unsaid."""
    return f"{raw[:3]}…{raw[-4:]}" if len(raw) >= 20 else "…"
