import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int) -> str:
    """`length` characters from a CSPRNG over [A-Za-z0-9]."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def opaque_id(prefix: str) -> str:
    """Unguessable public id, e.g. `gen_3fQ…` (~143 bits)."""
    return f"{prefix}_{random_token(24)}"
