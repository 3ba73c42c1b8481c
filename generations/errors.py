"""Machine-readable reasons a generation failed, stored on the row and shown to the user,
and the messages that more than one place gives for them."""

from django.conf import settings

PROVIDER_ERROR = "provider_error"
PROVIDER_REJECTED = "provider_rejected"
TIMEOUT = "timeout"
QUEUE_UNAVAILABLE = "queue_unavailable"
WORKER_LOST = "worker_lost"
NO_VALID_IMAGES = "no_valid_images"
CANCELED = "canceled"  # canceled by its owner; refunded in full
PARTIAL_RESULT = "partial_result"  # succeeded with fewer images than asked; the rest refunded


def timeout_message() -> str:
    return f"The generation did not finish within {settings.GENERATION_TIMEOUT_SECONDS} s; credits were refunded."


WORKER_LOST_MESSAGE = "The generation crashed its worker repeatedly and was stopped; credits were refunded."
