"""A streamed generation's partial images (`stream: true` with `partial_images`), relayed live
from the worker whose provider streams them to the web process that holds the client's stream.

Each goes over Redis pub/sub on its generation's own channel, which only a process with a
stream of that generation subscribes to (generations.completion, on its listener's connection:
a partial then reaches it before the generation's finish, published later on the same
connection's pattern). A partial is never stored: one that nobody hears — the client left, the
listener was reconnecting — is dropped, and the stream still ends with the final images. Without
Redis (the embedded default) none are relayed: the stream completes without them.

The same channel carries a streamed generation's final images as the worker stores them, so
that its stream's `*.completed` events need not read them back from S3 (two requests through
boto3 per image, the larger part of a stream's CPU on the web); one not heard is read from
storage as before.
"""

import logging
import time
from dataclasses import dataclass

import pybase64
import redis

from hub.infra import backends
from hub.infra.redis_client import redis_client

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "hub:generation-partial:"
FINAL = b"final"  # a final image's message starts with it; a partial's with its image index


def channel(generation_id: str) -> str:
    return CHANNEL_PREFIX + generation_id


@dataclass(frozen=True)
class Partial:
    image_index: int  # among the generation's n images
    partial_image_index: int
    b64_json: str
    created_at: int  # when the web process heard it (Unix seconds)


@dataclass(frozen=True)
class Final:
    """A final image, relayed as it was stored (its index among the stored images)."""

    index: int
    b64_json: str


def partial_publish(*, generation_id: str, image_index: int, partial_image_index: int, b64_json: str) -> None:
    """Relay a partial image to the generation's stream, if any listens. The base64 goes as the
    provider sent it, behind its two indexes: no JSON to build around a megabyte."""
    _publish(generation_id, b"%d %d " % (image_index, partial_image_index) + b64_json.encode("ascii", "replace"))


def final_publish(*, generation_id: str, index: int, data: bytes) -> None:
    """Relay a stored final image to the generation's stream, if any listens."""
    _publish(generation_id, b"%s %d " % (FINAL, index) + pybase64.b64encode(data))


def _publish(generation_id: str, message: bytes) -> None:
    if not backends.redis():
        return
    try:
        redis_client().publish(channel(generation_id), message)
    except (redis.RedisError, OSError) as exc:  # a nicety: the generation goes on, the stream reads S3
        logger.warning("could not relay an image of %s: %s", generation_id, exc)


def message_read(message: bytes) -> Partial | Final | None:
    """A relayed image, as partial_publish or final_publish sent it; None for anything else. Its
    base64 is checked here (a partial's is the provider's, as sent): the streams insert it in
    their events' JSON as it is (hub.http.sse.frame_with_base64)."""
    try:
        head, index, b64 = message.split(b" ", 2)
        pybase64.b64decode(b64, validate=True)  # SIMD: cheaper than any scan for the alphabet
        b64_json = b64.decode("ascii")
        if head == FINAL:
            return Final(int(index), b64_json)
        return Partial(int(head), int(index), b64_json, int(time.time()))
    except ValueError:  # binascii.Error and UnicodeDecodeError among them
        return None
