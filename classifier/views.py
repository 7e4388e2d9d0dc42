"""GET /health: whether the database answers and what model this process serves."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import JsonResponse


def health(request) -> JsonResponse:
    """Cheap liveness: one query, and what the model loader holds. Never loads a model."""
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
    return JsonResponse(
        {"status": overall, "database": database, "model": model}, status=503 if overall == "error" else 200
    )
