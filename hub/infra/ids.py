import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
# The largest multiple of the alphabet's size a byte can hold: bytes from it on are dropped, so
# that `byte % 62` picks every character equally often.
_UNBIASED_BELOW = 256 // len(_ALPHABET) * len(_ALPHABET)


def random_token(length: int) -> str:
    """`length` characters from a CSPRNG over [A-Za-z0-9], each equally likely. The bytes come
    from one read of the OS's CSPRNG per token, not one per character as `secrets.choice` makes
    (24 system calls for an id: ~3 % of an async submit's CPU in the web, bench async-c32)."""
    chars: list[str] = []
    while len(chars) < length:
        fresh = secrets.token_bytes(length + 8)
        chars += [_ALPHABET[byte % len(_ALPHABET)] for byte in fresh if byte < _UNBIASED_BELOW]
    return "".join(chars[:length])


def opaque_id(prefix: str) -> str:
    """Unguessable public id, e.g. `gen_3fQ…` (~143 bits)."""
    return f"{prefix}_{random_token(24)}"
