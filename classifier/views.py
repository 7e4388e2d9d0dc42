"""GET /health: whether the database answers and what model this process serves."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView


class HealthModelSerializer(serializers.Serializer):
    uri = serializers.CharField(help_text="The registry URI this process serves (models:/<name>@<alias>)")
    loaded = serializers.BooleanField(help_text="Whether this process has loaded a model yet")
    version = serializers.CharField(allow_null=True, help_text="The version it loaded")
    production_version = serializers.CharField(allow_null=True, help_text="The version the alias pointed to last")
    demo = serializers.BooleanField(allow_null=True, help_text="The demo model (ImageNet classes mapped)")
    source = serializers.CharField(allow_null=True, help_text="registry, or cache when the registry did not answer")
    runtime = serializers.CharField(allow_null=True, help_text="torch or onnx-int8")
    decoder = serializers.CharField(allow_null=True, help_text="pil or torchvision")


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["ok", "degraded", "error"], help_text="degraded: a demo or cached model; error: no database"
    )
    database = serializers.ChoiceField(choices=["ok", "error"])
    model = HealthModelSerializer()


HEALTH_EXAMPLE = {
    "status": "ok",
    "database": "ok",
    "model": {
        "uri": "models:/refund-classifier@production",
        "loaded": True,
        "version": "3",
        "production_version": "3",
        "demo": False,
        "source": "registry",
        "runtime": "onnx-int8",
        "decoder": "pil",
    },
}


class HealthView(APIView):
    """Cheap liveness: one query, and what the model loader holds. Never loads a model. Open to all."""

    authentication_classes = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        responses={200: HealthSerializer, 503: HealthSerializer},
        examples=[OpenApiExample("serving", value=HEALTH_EXAMPLE, response_only=True)],
    )
    def get(self, request):
        from . import inference, registry

        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            database = "ok"
        except Exception:
            database = "error"
        state = inference.loaded_state()
        model = {
            "uri": settings.MLFLOW_MODEL_URI,
            "loaded": state["loaded"],
            "version": state["version"],
            "production_version": registry.remembered_alias(settings.MODEL_ALIAS),
            "demo": state["demo"],
            "source": state["source"],
            "runtime": state["runtime"],
            "decoder": state["decoder"],
        }
        if database != "ok":
            overall = "error"
        elif state["source"] == "cache" or state["demo"]:
            overall = "degraded"
        else:
            overall = "ok"
        inference.refresh_model_gauge()
        return Response(
            {"status": overall, "database": database, "model": model}, status=503 if overall == "error" else 200
        )
