from django.db import models


class SignUpAttempt(models.Model):
    """A sign-up submitted from a client address, counted per address over the last hour
    (accounts.throttle); older rows are deleted as new ones come."""

    ip_address = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["ip_address", "created_at"])]
