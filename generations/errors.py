"""Machine-readable reasons a generation failed, stored on the row and shown to the user."""

PROVIDER_ERROR = "provider_error"
PROVIDER_REJECTED = "provider_rejected"
TIMEOUT = "timeout"
QUEUE_UNAVAILABLE = "queue_unavailable"
WORKER_LOST = "worker_lost"
NO_VALID_IMAGES = "no_valid_images"
PARTIAL_RESULT = "partial_result"  # succeeded with fewer images than asked; the rest refunded
