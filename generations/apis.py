from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.selectors import credits_summary
from billing.services import account_settled
from generations.catalog import enabled_models, model_get_enabled, reference_count_check
from generations.models import GenerationStatus
from generations.references import reference_images_read
from generations.selectors import generation_get_for_owner
from generations.serializers import GenerationInput, generation_output, model_output
from generations.services import generation_create, generation_wait
from hub.errors import GenerationFailed, InvalidRequest

class ModelListApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": [model_output(m) for m in enabled_models()]})


class CreditsRetrieveApi(APIView):
    def get(self, request: Request) -> Response:
        return Response(credits_summary(account=account_settled(user=request.user)))


class GenerationCreateApi(APIView):
    def post(self, request: Request) -> Response:
        is_multipart = request.content_type.startswith("multipart/")
        params = GenerationInput(request.data, is_multipart=is_multipart).parse()
        files = request.FILES.getlist("reference_image") if is_multipart else []
        if is_multipart and len(request.data.getlist("reference_image")) != len(files):
            raise InvalidRequest("reference_image must be a file upload (curl: -F 'reference_image=@./file.png')")
        unknown_files = set(request.FILES) - {"reference_image"} if is_multipart else set()
        if unknown_files:
            raise InvalidRequest(f"Unexpected file field(s): {', '.join(sorted(unknown_files))}")
        reference_count_check(model_get_enabled(params["model_id"]), len(files))  # before decoding any
        references = reference_images_read(files)
        generation = generation_create(owner=request.user, api_key=request.auth, references=references, **params)
        if params["is_async"]:
            return Response(generation_output(generation, request=request, poll_url=True), status=202)
        generation = generation_wait(generation=generation)
        if generation.status == GenerationStatus.FAILED:
            raise GenerationFailed(generation.error_message or None, generation_id=generation.id)
        return Response(generation_output(generation, request=request, balance=True))


class GenerationRetrieveApi(APIView):
    def get(self, request: Request, generation_id: str) -> Response:
        generation = generation_get_for_owner(owner=request.user, generation_id=generation_id)
        return Response(generation_output(generation, request=request))
