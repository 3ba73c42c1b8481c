"""Passwords for the local demo and admin logins, kept in the git-ignored var/ folder."""

import secrets

from django.conf import settings


def local_password(user, *, name: str) -> str:
    """The stored password for `user`, (re)set to a new random one if it no longer matches."""
    path = settings.VAR_DIR / name
    if not path.exists() or not user.check_password(path.read_text().strip()):
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
        user.set_password(path.read_text().strip())
        user.save(update_fields=["password"])
    return path.read_text().strip()
