"""A streamed generation's partial images (`stream: true` with `partial_images`), relayed live
from the worker whose provider streams them to the web process that holds the client's stream.

Each goes over Redis pub/sub on its generation's own channel, which only a process with a
stream of that generation subscribes to (generations.completion, on its listener's connection:
a partial then reaches it before the generation's finish, published later on the same
connection's pattern). A partial is never stored: one that nobody hears — the client left, the
listener was reconnecting — is dropped, and the stream still ends with the final images. Without
Redis (the embedded default) none are relayed: the stream completes without them.
"""

import logging
import time
from dataclasses import dataclass

import redis

from hub.infra import backends
from hub.infra.redis_client import redis_client

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "hub:generation-partial:"


def channel(generation_id: str) -> str:
    return CHANNEL_PREFIX + generation_id


@dataclass(frozen=True)
class Partial:
    image_index: int  # among the generation's n images
    partial_image_index: int
    b64_json: str
    created_at: int  # when the web process heard it (Unix seconds)


def partial_publish(*, generation_id: str, image_index: int, partial_image_index: int, b64_json: str) -> None:
    """Relay a partial image to the generation's stream, if any listens. The base64 goes as the
    provider sent it, behind its two indexes: no JSON to build around a megabyte."""
    if not backends.redis():
        return
    message = f"{image_index} {partial_image_index} ".encode() + b64_json.encode("ascii", "replace")
    try:
        redis_client().publish(channel(generation_id), message)
    except (redis.RedisError, OSError) as exc:  # a partial is a nicety: the generation goes on
        logger.warning("could not relay a partial image of %s: %s", generation_id, exc)


def partial_read(message: bytes) -> Partial | None:
    """A relayed partial, as partial_publish sent it; None for anything else."""
    try:
        image_index, partial_image_index, b64_json = message.split(b" ", 2)
        return Partial(int(image_index), int(partial_image_index), b64_json.decode("ascii"), int(time.time()))
    except (ValueError, UnicodeDecodeError):
        return None
