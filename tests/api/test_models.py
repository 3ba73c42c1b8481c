import pytest

pytestmark = pytest.mark.django_db


def test_lists_models_without_auth_in_openai_list_shape(api):
    response = api.get("/api/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    (model,) = body["data"]
    assert model == {
        "id": "gpt-image-2",
        "object": "model",
        "created": 1767225600,
        "owned_by": "openai",
        "provider": "openai",
        "aspect_ratios": ["1:1", "3:2", "2:3"],
        "sizes": ["auto", "1024x1024", "1536x1024", "1024x1536"],
        "qualities": ["auto", "low", "medium", "high"],
        "reference_image_limit": 16,
        "options": {
            "background": ["auto", "opaque", "transparent"],
            "output_format": ["png", "jpeg", "webp"],
            "output_compression": True,
            "moderation": ["auto", "low"],
            "user": True,
            "safety_identifier": True,
            "input_fidelity": ["high", "low"],
            "mask": True,
        },
        "credits_per_image": {"low": 2, "medium": 4, "high": 8, "auto": 8},
    }


def test_disabled_models_are_not_listed(api):
    from generations.models import ImageModel

    ImageModel.objects.filter(pk="gpt-image-2").update(enabled=False)
    assert api.get("/api/v1/models").json()["data"] == []


def test_unknown_api_path_answers_json_not_found(api):
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"message": "Resource not found", "code": "notFound", "type": "not_found_error", "param": None}
    }


def test_wrong_method_answers_envelope(api):
    response = api.delete("/api/v1/models")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "methodNotAllowed"
