from apikeys.models import ApiKey
from hub.errors import NotFound


def api_keys_for_owner(*, owner):
    return ApiKey.objects.filter(owner=owner).order_by("-created_at")


def api_key_get_for_owner(*, owner, key_id: str) -> ApiKey:
    key = ApiKey.objects.filter(owner=owner, pk=key_id).first()
    if key is None:
        raise NotFound("API key not found")
    return key
