"""The JSON API under /api/: photos in, runs started and followed, results out."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import exports, ingest, services
from .models import BatchRun, Image
from .serializers import (
    BatchRunSerializer,
    PredictErrorSerializer,
    ResultSerializer,
    StartRunSerializer,
    UploadResultSerializer,
)
from .throttles import WriteThrottle


class ModelPermissions(permissions.DjangoModelPermissions):
    """Django's model permissions, with reading guarded too (deny by default)."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


class BatchRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = BatchRun.objects.all()
    serializer_class = BatchRunSerializer
    permission_classes = [ModelPermissions]
    throttle_classes = [WriteThrottle]

    @extend_schema(
        request=StartRunSerializer,
        responses={201: BatchRunSerializer, 400: PredictErrorSerializer, 503: PredictErrorSerializer},
        examples=[
            OpenApiExample("these photos", value={"image_ids": [12, 13, 14]}, request_only=True),
            OpenApiExample("everything without a result", value={}, request_only=True),
        ],
    )
    def create(self, request):
        """Start a run over the given images, or over everything without a result."""
        serializer = StartRunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ids = serializer.validated_data.get("image_ids")
        images = None
        if ids is not None:
            images = list(Image.objects.filter(pk__in=ids))
            if len(images) != len(set(ids)):
                return Response({"error": "unknown_image", "detail": "some image ids do not exist"}, status=400)
        try:
            run = services.start_and_enqueue_run(BatchRun.Trigger.API, images=images, user=request.user)
        except services.NoModel as exc:
            return Response({"error": "model_unavailable", "detail": str(exc)}, status=503)
        run.refresh_from_db()
        return Response(BatchRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: ResultSerializer(many=True)})
    @action(detail=True)
    def results(self, request, pk=None):
        """One row per photo of the run (paginated)."""
        run = self.get_object()
        page = self.paginate_queryset(run.result_images())
        return self.get_paginated_response([exports.image_row(image, run.model_version) for image in page])


class ImageUploadView(APIView):
    """Store photos (multipart field `images`); refused files are listed with their reason."""

    parser_classes = [MultiPartParser]
    permission_classes = [ModelPermissions]
    throttle_classes = [WriteThrottle]
    queryset = Image.objects.none()

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            }
        },
        responses={201: UploadResultSerializer, 400: UploadResultSerializer, 507: UploadResultSerializer},
        examples=[
            OpenApiExample(
                "one stored, one refused",
                response_only=True,
                status_codes=["201"],
                value={
                    "created": [12],
                    "existing": [],
                    "rejected": [{"name": "scan.pdf", "reason": "not_an_image", "detail": "not a JPEG, PNG or WebP"}],
                },
            )
        ],
    )
    def post(self, request):
        files = request.FILES.getlist("images")
        if not files:
            return Response({"error": "no_files", "detail": "send photos in the multipart field 'images'"}, status=400)
        registration = ingest.register_uploads(files, Image.Source.API)
        body = {
            "created": [image.pk for image in registration.created],
            "existing": [image.pk for image in registration.existing],
            "rejected": [{"name": n, "reason": r.reason, "detail": r.detail} for n, r in registration.rejected],
        }
        if registration.images:
            code = status.HTTP_201_CREATED
        elif registration.storage_full:
            code = status.HTTP_507_INSUFFICIENT_STORAGE
        else:
            code = status.HTTP_400_BAD_REQUEST
        return Response(body, status=code)
