from rest_framework import serializers

from . import services
from .models import BatchRun


class BatchRunSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    failures_by_reason = serializers.SerializerMethodField()
    duration_seconds = serializers.FloatField(read_only=True)
    images_per_second = serializers.FloatField(read_only=True)

    class Meta:
        model = BatchRun
        fields = [
            "id",
            "status",
            "trigger",
            "model_version",
            "model_demo",
            "total",
            "progress",
            "n_predicted",
            "n_failed",
            "n_review",
            "class_counts",
            "failures_by_reason",
            "created_at",
            "finished_at",
            "duration_seconds",
            "images_per_second",
            "error",
        ]
        read_only_fields = fields

    def get_failures_by_reason(self, run: BatchRun) -> dict[str, int]:
        return services.failure_counts(run)

    def get_progress(self, run: BatchRun) -> dict:
        counts = services.run_counts(run)
        counts["percent"] = round(100 * counts["done"] / run.total, 1) if run.total else 100.0
        return counts


class StartRunSerializer(serializers.Serializer):
    image_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        allow_empty=False,
        help_text="Images to classify (default: every image without a result for the production model)",
    )


class ResultSerializer(serializers.Serializer):
    image_id = serializers.IntegerField()
    original_name = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["predicted", "failed", "pending"])
    predicted_class = serializers.CharField(allow_blank=True)
    confidence = serializers.CharField(allow_blank=True)
    needs_review = serializers.CharField(allow_blank=True)
    review_status = serializers.CharField(allow_blank=True)
    final_class = serializers.CharField(allow_blank=True)
    failure_reason = serializers.CharField(allow_blank=True)
    failure_detail = serializers.CharField(allow_blank=True)


class UploadResultSerializer(serializers.Serializer):
    created = serializers.ListField(child=serializers.IntegerField())
    existing = serializers.ListField(child=serializers.IntegerField())
    rejected = serializers.ListField(child=serializers.DictField())
