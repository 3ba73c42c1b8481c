from django.contrib.auth import get_user_model
from django.db import transaction

from billing.services import account_get_or_create


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


def user_sign_up(*, email: str, password: str):
    """A self-service sign-up, with an empty credit account.

    Sign-ups start at 0 credits: there is no email verification, so free credits would
    reward scripted sign-ups. Operators grant credits in the admin console.
    """
    return user_create(email=email, password=password)
