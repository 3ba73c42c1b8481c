"""The floor: the least a request can cost on this serving stack.

A bare DRF view that parses the same JSON body as the generation endpoint, then does one indexed
SELECT (by a key digest, like API key authentication) and one UPDATE (like `last_used_at`) on
its own table, `bench_floor`, which the stack creates. Async submit req/s divided by floor
req/s shows how much of the hub's cost is its own work rather than the server and PostgreSQL.
"""

from django.db import connection
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class FloorApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        model = request.data.get("model")
        digest = request.headers.get("Authorization", "").removeprefix("Bearer ")
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM bench_floor WHERE digest = %s", [digest])
            row = cursor.fetchone()
            if row is None:
                return Response({"error": {"message": "unknown key", "code": "invalidApiKey"}}, status=401)
            cursor.execute("UPDATE bench_floor SET last_used_at = now() WHERE id = %s", [row[0]])
        return Response({"ok": True, "model": model}, status=202)
