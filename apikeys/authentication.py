import structlog
from rest_framework.authentication import BaseAuthentication

from apikeys.services import api_key_authenticate
from hub.http.errors import InvalidApiKey


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer gih_live_…`; a missing header is left to the permission check."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidApiKey()
        key = api_key_authenticate(token.strip())
        structlog.contextvars.bind_contextvars(account_id=key.owner_id)  # on the request's log lines
        return key.owner, key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
