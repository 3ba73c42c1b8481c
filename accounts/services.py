from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core import signing
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse

from apikeys.selectors import email_verification_pending
from apikeys.services import email_verification_confirm, email_verification_start
from billing.services import account_get_or_create

EMAIL_VERIFICATION_SALT = "accounts.email-verification"
EMAIL_VERIFICATION_MAX_AGE_SECONDS = 3 * 24 * 3600


@transaction.atomic
def user_create(*, email: str, password: str | None = None, is_staff: bool = False):
    """The one way users come to be: username = the lower-case email, and a credit account.

    Without a password the user cannot sign in until one is set (operators, scripts).
    """
    email = email.strip().lower()
    user = get_user_model().objects.create_user(
        username=email, email=email, password=password, is_staff=is_staff, is_superuser=is_staff
    )
    account_get_or_create(user=user)
    return user


def user_sign_up(*, email: str, password: str, site_url: str) -> None:
    """A self-service sign-up, with an empty credit account (free credits would reward scripted
    sign-ups; operators grant credits in the admin console).

    The answer never tells whether the address already has an account: a new address gets its
    user and an email with a link that confirms it (required before its API keys work when
    REQUIRE_EMAIL_VERIFICATION is on); a taken one gets an email to its owner instead — a fresh
    link if it is still unconfirmed — and the password is hashed all the same, so the answer
    takes as long.
    """
    email = email.strip().lower()
    existing = get_user_model().objects.filter(username__iexact=email).first()
    if existing is None:
        try:
            with transaction.atomic():
                user = user_create(email=email, password=password)
                email_verification_start(owner=user)
        except IntegrityError:  # a concurrent sign-up with the same address won
            existing = get_user_model().objects.get(username__iexact=email)
        else:
            email_verification_send(user=user, site_url=site_url)
            return
    make_password(password)
    if email_verification_pending(owner=existing):
        email_verification_send(user=existing, site_url=site_url)
    else:
        _send(existing.email, "already_registered", {"email": existing.email, "site_url": site_url})


def email_verification_send(*, user, site_url: str) -> None:
    token = signing.dumps({"user": user.pk, "email": user.email}, salt=EMAIL_VERIFICATION_SALT)
    link = site_url + reverse("accounts:verify_email", kwargs={"token": token})
    context = {"email": user.email, "link": link, "required": settings.REQUIRE_EMAIL_VERIFICATION}
    _send(user.email, "verify_email", context)


def user_email_confirm(*, token: str):
    """The user a verification link names, now confirmed; None for a bad or expired link."""
    try:
        claims = signing.loads(token, salt=EMAIL_VERIFICATION_SALT, max_age=EMAIL_VERIFICATION_MAX_AGE_SECONDS)
    except signing.BadSignature:  # also SignatureExpired
        return None
    user = get_user_model().objects.filter(pk=claims.get("user"), email=claims.get("email")).first()
    if user is not None:
        email_verification_confirm(owner=user)
    return user


def _send(to: str, template: str, context: dict) -> None:
    subject = render_to_string(f"accounts/email/{template}_subject.txt", context).strip()
    body = render_to_string(f"accounts/email/{template}.txt", context)
    send_mail(subject, body, None, [to])
