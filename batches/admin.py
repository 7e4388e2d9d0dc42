from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from classifier.admin import ReadOnlyAdmin

from .models import BatchRun, FailedImage, Image, Prediction


def thumbnail_tag(image: Image, size: int = 64) -> str:
    url = reverse("batches:thumbnail", args=[image.pk])
    return format_html('<img src="{}" alt="{}" style="max-height:{}px;max-width:{}px">', url, image, size, size)


@admin.register(Image)
class ImageAdmin(ReadOnlyAdmin):
    list_display = ["id", "preview", "original_name", "source", "size_bytes", "created_at"]
    list_filter = ["source"]
    search_fields = ["original_name", "sha256"]
    readonly_fields = [
        "preview",
        "sha256",
        "original_name",
        "source",
        "size_bytes",
        "created_at",
        "attempts",
        "lease_version",
        "lease_until",
    ]
    exclude = ["file"]

    @admin.display(description="Photo")
    def preview(self, obj: Image) -> str:
        return thumbnail_tag(obj)


@admin.register(BatchRun)
class BatchRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "status",
        "trigger",
        "model_version",
        "total",
        "n_predicted",
        "n_failed",
        "n_review",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "trigger", "model_version"]
    exclude = ["images"]


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = ["id", "preview", "predicted_class", "confidence", "model_version", "batch_run", "created_at"]
    list_filter = ["model_version", "predicted_class"]
    list_select_related = ["image", "batch_run"]

    @admin.display(description="Photo")
    def preview(self, obj: Prediction) -> str:
        return thumbnail_tag(obj.image)


@admin.register(FailedImage)
class FailedImageAdmin(ReadOnlyAdmin):
    list_display = ["id", "image", "reason", "detail", "model_version", "batch_run", "created_at"]
    list_filter = ["reason", "model_version"]
    list_select_related = ["image", "batch_run"]
