"""POST /predict: classify photos now, from uploads, stored photos (by id) or inbox files (by path).

This app finds the photos (its `Image` rows, the media and inbox folders) and hands them to the
classifier as bytes or paths inside those folders; the classifier decodes and classifies them.
Nothing is stored.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import permissions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from classifier.imaging import Rejection

from . import metrics
from .models import Image
from .serializers import PredictErrorSerializer, PredictJSONSerializer, PredictResponseSerializer
from .storage import photo_source
from .throttles import PredictThrottle

UPLOAD_FIELDS = ("images", "image", "file")


class CanClassify(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.has_perm("batches.classify_image"))


class InputError(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code, self.detail = code, detail


class PredictView(APIView):
    """Classify photos now: multipart uploads, stored images by id, or inbox files by path."""

    permission_classes = [permissions.IsAuthenticated, CanClassify]
    throttle_classes = [PredictThrottle]

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            },
            "application/json": PredictJSONSerializer,
        },
        responses={
            200: PredictResponseSerializer,
            400: PredictErrorSerializer,
            403: PredictErrorSerializer,
            429: PredictErrorSerializer,
            503: PredictErrorSerializer,
        },
        examples=[
            OpenApiExample("stored photos by id", value={"image_ids": [12, 13]}, request_only=True),
            OpenApiExample(
                "inbox files by path", value={"image_paths": ["2026-12-05/ret-0001.jpg"]}, request_only=True
            ),
            OpenApiExample(
                "one photo classified",
                response_only=True,
                status_codes=["200"],
                value={
                    "model_version": "3",
                    "predictions": [
                        {
                            "input": "ret-0001.jpg",
                            "predicted_class": "casual_shoes",
                            "confidence": 0.974,
                            "threshold": 0.93,
                            "auto_accepted": True,
                            "review_reason": None,
                            "all_probabilities": {"casual_shoes": 0.974, "sports_shoes": 0.021, "heels": 0.005},
                        }
                    ],
                },
            ),
            OpenApiExample(
                "too many files",
                response_only=True,
                status_codes=["400"],
                value={"error": "too_many_files", "detail": "at most 200 photos per request", "limit": 200},
            ),
        ],
    )
    def post(self, request):
        try:
            inputs = collect_inputs(request)
        except InputError as exc:
            return Response({"error": exc.code, "detail": exc.detail}, status=status.HTTP_400_BAD_REQUEST)
        return classify_inputs(inputs)


def collect_inputs(request) -> list[tuple[str, bytes | Path]]:
    """(label, source) pairs, where a source is an upload's bytes or a path inside our folders."""
    uploads = [f for field in UPLOAD_FIELDS for f in request.FILES.getlist(field)]
    if uploads:
        if len(uploads) > settings.MAX_UPLOAD_FILES:
            raise InputError("too_many_files", f"at most {settings.MAX_UPLOAD_FILES} files per request")
        return [(upload.name or f"file{i}", _read_upload(upload)) for i, upload in enumerate(uploads)]
    serializer = PredictJSONSerializer(data=request.data)
    if not serializer.is_valid():
        raise InputError("invalid_request", _flatten(serializer.errors))
    data = serializer.validated_data
    if len(data.get("image_ids") or data.get("image_paths")) > settings.MAX_UPLOAD_FILES:
        raise InputError("too_many_files", f"at most {settings.MAX_UPLOAD_FILES} images per request")
    if "image_ids" in data:
        return stored_images(data["image_ids"])
    return [(path, inbox_path(path)) for path in data["image_paths"]]


def _read_upload(upload) -> bytes:
    # One byte over the limit is enough for the decoder to refuse it as too large.
    return upload.read(settings.MAX_UPLOAD_BYTES + 1)


def stored_images(ids: list[int]) -> list[tuple[str, str | bytes]]:
    images = Image.objects.in_bulk(ids)
    missing = [str(i) for i in ids if i not in images]
    if missing:
        raise InputError("unknown_image", f"no image with id {', '.join(missing)}")
    return [(str(i), photo_source(images[i].file.name)) for i in ids]


def inbox_path(raw: str) -> Path:
    """Resolve a client-given path inside INBOX_DIR; anything that leaves it is refused."""
    root = Path(settings.INBOX_DIR).resolve()
    if "\x00" in raw:
        raise InputError("path_not_allowed", "invalid path")
    path = (root / raw).resolve()  # an absolute `raw` replaces root; symbolic links are followed
    if not path.is_relative_to(root) or path == root:
        raise InputError("path_not_allowed", f"{raw!r} is not inside the inbox folder")
    if not path.is_file():
        raise InputError("file_missing", f"{raw!r} does not exist in the inbox folder")
    return path


def classify_inputs(inputs: list[tuple[str, bytes | Path]]) -> Response:
    from classifier import inference

    try:
        classifier = inference.get_classifier()
        outcomes = classifier.classify_files([source for _, source in inputs])
    except (inference.ModelUnavailable, inference.InferenceError) as exc:
        return Response({"error": "model_unavailable", "detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    errors = [
        {"index": i, "input": label, "reason": outcome.reason, "detail": outcome.detail}
        for i, ((label, _), outcome) in enumerate(zip(inputs, outcomes))
        if isinstance(outcome, Rejection)
    ]
    if errors:
        first = errors[0]
        return Response(
            {"error": first["reason"], "detail": f"{first['input']}: {first['detail']}", "errors": errors},
            status=status.HTTP_400_BAD_REQUEST,
        )
    metrics.record_outcomes(outcomes, [], source="api")
    predictions = [
        {
            "input": label,
            "predicted_class": o.predicted_class,
            "confidence": o.confidence,
            "threshold": o.threshold,
            "auto_accepted": o.auto_accepted,
            "review_reason": o.review_reason,
            "all_probabilities": o.probabilities,
        }
        for (label, _), o in zip(inputs, outcomes)
    ]
    return Response({"predictions": predictions, "model_version": classifier.version})


def _flatten(errors) -> str:
    if isinstance(errors, dict):
        return "; ".join(f"{key}: {_flatten(value)}" for key, value in errors.items())
    if isinstance(errors, list):
        return " ".join(_flatten(item) for item in errors)
    return str(errors)
