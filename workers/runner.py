"""One attempt at a generation: claim it, call the provider, store the images, finalize."""

import io
import logging
import time
from contextlib import ExitStack

import structlog
from django.db import DatabaseError, IntegrityError, connection
from django.utils import timezone
from PIL import Image

from generations import errors
from generations.models import Generation
from generations.partials import final_publish, partial_publish
from generations.services import ProviderCall, StoredImage, generation_claim, generation_fail, generation_finalize
from hub.infra import backends, metrics, storage
from upstreams.metrics import QUEUE_WAIT
from upstreams.routing import Choice
from workers import upstream_calls
from workers.finishing import finishing_turn
from workers.lease import lease_held
from workers.providers import ProviderError, ProviderRequest
from workers.providers.base import PartialImage

logger = logging.getLogger(__name__)

# Leave this much of the deadline for storing images and finalizing after the provider returns.
FINALIZE_MARGIN_SECONDS = 5
STORED_FORMATS = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"), "WEBP": ("webp", "image/webp")}
ASKED_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}  # an `output_format` → its image format


class ClaimUnavailable(Exception):
    """The database could not be reached before the attempt was claimed: nothing was done,
    so the task is retried (with backoff) rather than acknowledged as done."""


def generation_run(generation_id: str, *, held: Choice | None = None, announce: bool = True) -> bool:
    """Claim the generation and run one attempt of it: True when it was this task's to run (a
    slot `held` for it by its task, workers.turns, is then used or given back); False when it was
    not (finished, canceled, deleted, or another attempt owns it), and `held` stays the caller's.
    `announce`: publish its start (generation_claim), unless its task knows nobody watches it."""
    try:
        generation = generation_claim(generation_id=generation_id, announce=announce)
    except DatabaseError as exc:
        raise ClaimUnavailable(str(exc)) from exc
    if generation is None:
        logger.info("generation %s: not queued (finished or taken); nothing to do", generation_id)
        return False
    structlog.contextvars.bind_contextvars(account_id=generation.owner_id)
    # A first attempt waited from its creation (its enqueued_at moves with the sweeper's re-sends).
    queued_at = generation.created_at if generation.attempts == 1 else generation.enqueued_at or generation.created_at
    QUEUE_WAIT.observe((generation.started_at - queued_at).total_seconds())
    _attempt(generation, held=held)
    return True


def _attempt(generation: Generation, *, held: Choice | None) -> None:
    """The claimed attempt: its provider call (which owns `held` once it is made), its images
    stored, its finish."""
    generation_id, attempt = generation.id, generation.attempts
    try:
        request = _request(generation)
    except BaseException:
        if held is not None:
            upstream_calls.slot_give_back(held)
        raise
    if request is None:
        if held is not None:
            upstream_calls.slot_give_back(held)
        generation_fail(
            generation_id=generation_id,
            code=errors.TIMEOUT,
            message="The generation waited too long in the queue; credits were refunded.",
        )
        return
    connection.close()  # back to the pool: the provider call may take minutes
    unrecorded = []  # the record of the provider call that ends the attempt, written with its finish
    try:
        with ExitStack() as finishing:
            with lease_held(generation_id=generation_id, attempt=attempt) as lease:
                called_at, clock = timezone.now(), time.monotonic()
                try:
                    generated = upstream_calls.generate(
                        generation.model,
                        request,
                        generation_id=generation_id,
                        held=held,
                        abandoned=lease.lost,
                        unrecorded=unrecorded,
                    )
                except upstream_calls.AttemptAbandoned:
                    logger.info("generation %s: no longer this attempt's (%s); not sent", generation_id, attempt)
                    return
                except ProviderError as exc:
                    call = ProviderCall(called_at, _ms_since(clock), exc.kind)
                    metrics.PROVIDER_ERRORS.labels(exc.kind).inc()
                    logger.warning(
                        "generation %s: provider error (permanent=%s): %s", generation_id, exc.permanent, exc.detail
                    )
                    code = errors.PROVIDER_REJECTED if exc.permanent else errors.PROVIDER_ERROR
                    _finalize(generation_id, attempt, [], (code, exc.user_message), call, unrecorded)
                    return
                outputs, usage = generated.images, generated.usage.as_response() if generated.usage else None
                call = ProviderCall(called_at, _ms_since(clock), "ok", images=len(outputs), usage=usage)
                # From here through the finalize, a turn: a burst of answers finishes in the order it came.
                finishing.enter_context(finishing_turn())
                images = _store_valid(generation, outputs[: generation.n])
            _finalize(generation_id, attempt, images, _no_image_error(outputs, images), call, unrecorded)
    finally:
        if unrecorded:  # no finish wrote them (an exception on the way)
            upstream_calls.records_write(unrecorded)


def _finalize(
    generation_id: str,
    attempt: int,
    images: list[StoredImage],
    error: tuple[str, str] | None,
    call: ProviderCall,
    unrecorded: list,
) -> None:
    """The attempt's finish, with the record of its last provider call in its statement. A
    record the database refuses (its upstream deleted during the call) is not kept; the finish
    is."""
    finish = {"generation_id": generation_id, "attempt": attempt, "images": images, "error": error, "call": call}
    try:
        generation_finalize(**finish, rows=upstream_calls.as_rows(unrecorded))
    except IntegrityError as exc:
        if not unrecorded:
            raise
        logger.warning("generation %s: its provider call was not recorded: %s", generation_id, exc)
        generation_finalize(**finish)
    unrecorded.clear()


def _request(generation: Generation) -> ProviderRequest | None:
    """The provider request of a claimed attempt; None when its deadline leaves no time for one."""
    seconds_left = (generation.deadline_at - timezone.now()).total_seconds() - FINALIZE_MARGIN_SECONDS
    if seconds_left <= 0:
        return None
    return ProviderRequest(
        model=generation.model.upstream_model or generation.model.id,
        prompt=generation.prompt,
        size=generation.size,
        quality=generation.quality,
        n=generation.n,
        deadline=time.monotonic() + seconds_left,
        references=[storage.object_read(ref.storage_key) for ref in generation.references.all()]
        if generation.reference_count
        else [],
        options={name: value for name, value in generation.options.items() if name != "mask"},
        mask=storage.object_read(storage.mask_key(generation_id=generation.id))
        if generation.options.get("mask")
        else None,
        **_partials(generation),
    )


def _partials(generation: Generation) -> dict:
    """A streamed generation's partial images: asked of the provider (OpenAI bills each) only
    where they can be relayed to its stream (generations.partials: over Redis)."""
    if not generation.partial_images or not backends.redis():  # None (not streamed) or 0
        return {}

    def relay(partial: PartialImage) -> None:
        partial_publish(
            generation_id=generation.id,
            image_index=partial.image_index,
            partial_image_index=partial.partial_image_index,
            b64_json=partial.b64_json,
        )

    return {"partial_images": generation.partial_images, "on_partial": relay}


def _ms_since(clock: float) -> int:
    return round((time.monotonic() - clock) * 1000)


def _no_image_error(outputs: list[bytes], images: list[StoredImage]) -> tuple[str, str] | None:
    """The failure of an answer that left no image to keep; None when one was stored."""
    if images:
        return None
    if outputs:
        return (
            errors.NO_VALID_IMAGES,
            "The provider returned data that is not a valid image, or not the image asked; credits were refunded.",
        )
    return errors.PROVIDER_ERROR, "The provider returned no images; credits were refunded."


def _store_valid(generation: Generation, outputs: list[bytes]) -> list[StoredImage]:
    """The outputs that are images as asked, stored; any other is dropped, the provider's error
    (refunded as a missing image)."""
    stored = []
    for data in outputs:
        shape = image_shape(data)
        if shape is None:
            logger.warning(
                "generation %s: provider output is not a valid PNG, JPEG or WebP image; dropped", generation.id
            )
            continue
        fmt, width, height = shape
        mismatch = _not_as_asked(generation, data, shape)
        if mismatch:
            logger.warning("generation %s: provider output is not as asked (%s); dropped", generation.id, mismatch)
            continue
        ext, content_type = STORED_FORMATS[fmt]
        index = len(stored)
        key = storage.image_key(generation_id=generation.id, index=index, ext=ext)
        storage.object_save(key=key, data=data, content_type=content_type)
        if generation.partial_images is not None:  # streamed: its stream need not read it back
            final_publish(generation_id=generation.id, index=index, data=data)
        stored.append(StoredImage(index, key, content_type, width, height, len(data)))
    return stored


def _not_as_asked(generation: Generation, data: bytes, shape: tuple[str, int, int]) -> str:
    """How an image differs from what the generation asked, or "": its format (when one was
    asked), its size (unless auto), an alpha channel (when a transparent background was)."""
    fmt, width, height = shape
    options = generation.options
    if "output_format" in options and fmt != ASKED_FORMATS[options["output_format"]]:
        return f"{fmt} for {options['output_format']}"
    if generation.size != "auto" and f"{width}x{height}" != generation.size:
        return f"{width}x{height} for {generation.size}"
    if options.get("background") == "transparent" and not has_alpha(data):
        return "no alpha channel for a transparent background"
    return ""


def has_alpha(data: bytes) -> bool:
    """Whether the image has an alpha channel (PNG, WebP), read from its header."""
    with Image.open(io.BytesIO(data), formats=tuple(STORED_FORMATS)) as image:
        return image.has_transparency_data


def image_shape(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) of a complete PNG, JPEG or WebP image; None for anything else.

    Checked without decoding the pixels (a full decode of a 1024² PNG costs ~15 ms of CPU, most of
    the worker's time per image): the header gives format and size, and completeness is checked
    per format — PNG: every chunk's CRC through IEND (Pillow's verify); JPEG: the end-of-image
    marker; WebP: the RIFF length. The bytes are stored as sent, never re-encoded.
    """
    try:
        with Image.open(io.BytesIO(data), formats=tuple(STORED_FORMATS)) as image:
            fmt, (width, height) = image.format, image.size
            if fmt == "PNG":
                image.verify()
    except Exception:  # noqa: BLE001 — untrusted bytes: any parser failure means "not an image"
        return None
    if fmt == "JPEG" and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        return None
    if fmt == "WEBP" and int.from_bytes(data[4:8], "little") + 8 != len(data):
        return None
    return fmt, width, height
