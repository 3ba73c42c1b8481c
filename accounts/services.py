from django.contrib.auth import get_user_model
from django.db import transaction

from billing.services import account_get_or_create


@transaction.atomic
def user_sign_up(*, email: str, password: str):
    """A user whose username is the (lower-case) email, with an empty credit account.

    Sign-ups start at 0 credits: there is no email verification, so free credits would
    reward scripted sign-ups. Operators grant credits in the admin console.
    """
    email = email.strip().lower()
    user = get_user_model().objects.create_user(username=email, email=email, password=password)
    account_get_or_create(user=user)
    return user
