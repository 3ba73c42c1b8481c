"""The hub's error vocabulary: each maps to one row of the contract's error table."""


class HubError(Exception):
    status = 400
    code = "invalid_request"
    default_message = "Invalid request body"

    def __init__(self, message: str | None = None, *, param: str | None = None):
        self.message = message or self.default_message
        self.param = param  # the request field at fault, shown as OpenAI's `error.param`
        super().__init__(self.message)


class InvalidRequest(HubError):
    pass


class InvalidApiKey(HubError):
    status = 401
    code = "invalidApiKey"
    default_message = "Invalid API key"


class ExpiredApiKey(HubError):
    status = 401
    code = "expiredApiKey"
    default_message = "API key has expired"


class EmailNotVerified(HubError):
    status = 401
    code = "emailNotVerified"
    default_message = (
        "Confirm your email address before using API keys: open the link we emailed you at sign-up,"
        " or ask for a new one on your account page"
    )


class InsufficientCredits(HubError):
    status = 402
    code = "insufficientCredits"
    default_message = "Not enough credits"


class IdempotencyConflict(HubError):
    status = 409
    code = "idempotencyConflict"
    default_message = "This Idempotency-Key was already used with a different request"


class _AboutGeneration(HubError):
    """An error about one generation: the envelope names it (`generation_id`)."""

    def __init__(self, message: str | None = None, *, generation_id: str | None = None):
        super().__init__(message)
        self.generation_id = generation_id


class GenerationCanceled(_AboutGeneration):
    status = 409
    code = "generationCanceled"
    default_message = "The generation was canceled"


class NotFound(HubError):
    status = 404
    code = "notFound"
    default_message = "Resource not found"


class PaymentsUnavailable(HubError):
    """Stripe could not be reached or refused to open a checkout: nothing was charged."""

    status = 503
    code = "paymentsUnavailable"
    default_message = "The payment provider is unavailable; nothing was charged, try again shortly"


class GenerationFailed(_AboutGeneration):
    status = 500
    code = "generationFailed"
    default_message = "Image generation failed"


class ModelNotAllowed(HubError):
    """The key may not use this model: a permission, not a rate — retrying cannot help."""

    status = 403
    code = "modelNotAllowed"
    default_message = "This API key may not use this model"


class RateLimited(HubError):
    """A limit of the key ran out for now. `limit`, `remaining` and `reset` (seconds until it
    refills) become the `x-ratelimit-*` headers and `retry_after` the `Retry-After` header, which
    the OpenAI SDKs wait for before they retry."""

    status = 429
    code = "rateLimited"
    default_message = "Rate limit reached"

    def __init__(self, message: str | None = None, *, limit: int, remaining: int, reset: int, retry_after: int):
        super().__init__(message)
        self.headers = {
            "Retry-After": str(max(1, retry_after)),
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(max(0, remaining)),
            "x-ratelimit-reset": str(max(1, reset)),
        }


class MonthlyCreditCapReached(RateLimited):
    """The key's monthly credit cap is spent. Still a 429 (OpenAI answers an exhausted quota
    with 429 too, so SDK users look there), but its own code and `x-should-retry: false`: a
    retry cannot pass before the month ends, which `Retry-After` names (in seconds)."""

    code = "monthlyCreditCapReached"
    default_message = "This API key's monthly credit cap is reached"
