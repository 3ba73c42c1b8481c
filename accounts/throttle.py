from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from accounts.models import SignUpAttempt

SIGN_UP_WINDOW = timedelta(hours=1)


def login_username(request, credentials) -> str:
    """The name django-axes counts failures under: case-folded, as the login form folds it,
    so "Alice@" and "alice@" share one budget of attempts."""
    username = (credentials or {}).get("username") or request.POST.get("username") or ""
    return username.strip().lower()


def client_ip(request) -> str:
    """The client's address, for login and sign-up throttling. Behind the TLS proxy
    (HUB_BEHIND_TLS_PROXY) it is the right-most X-Forwarded-For entry — the one that proxy
    appended; entries left of it come from the client and can be forged; else the peer's."""
    if settings.BEHIND_TLS_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return request.META.get("REMOTE_ADDR") or ""


def sign_up_attempt_allowed(*, ip_address: str) -> bool:
    """Count a sign-up from this address; False (not counted) once it made
    SIGNUPS_PER_IP_PER_HOUR of them within the last hour."""
    limit = settings.SIGNUPS_PER_IP_PER_HOUR
    if limit <= 0:
        return True
    since = timezone.now() - SIGN_UP_WINDOW
    SignUpAttempt.objects.filter(created_at__lt=since).delete()
    if SignUpAttempt.objects.filter(ip_address=ip_address, created_at__gte=since).count() >= limit:
        return False
    SignUpAttempt.objects.create(ip_address=ip_address[:64])
    return True
