from rest_framework import serializers

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
        return run.failure_counts()

    def get_progress(self, run: BatchRun) -> dict:
        counts = run.counts()
        counts["percent"] = round(100 * counts["done"] / run.total, 1) if run.total else 100.0
        return counts


# The largest id a PostgreSQL bigint holds: a larger one is refused as invalid, not sent to the database.
MAX_ID = 2**63 - 1


class StartRunSerializer(serializers.Serializer):
    image_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
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


# --- /predict ----------------------------------------------------------------------


class PredictJSONSerializer(serializers.Serializer):
    """Either stored images by id, or files inside the inbox folder by path."""

    image_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False, allow_empty=False
    )
    image_paths = serializers.ListField(child=serializers.CharField(max_length=1024), required=False, allow_empty=False)

    def validate(self, attrs):
        if ("image_ids" in attrs) == ("image_paths" in attrs):
            raise serializers.ValidationError("send exactly one of image_ids, image_paths (or upload files)")
        return attrs


class PredictionSerializer(serializers.Serializer):
    input = serializers.CharField(help_text="The file name, image id or path this prediction is for")
    predicted_class = serializers.CharField()
    confidence = serializers.FloatField(help_text="Calibrated: of photos given 0.9, about 90% are right")
    threshold = serializers.FloatField(allow_null=True, help_text="The confidence its class needs to be accepted")
    auto_accepted = serializers.BooleanField(help_text="Confident enough for its class's threshold")
    review_reason = serializers.CharField(allow_null=True, help_text="low_confidence or unknown_item; null if accepted")
    all_probabilities = serializers.DictField(child=serializers.FloatField())


class PredictResponseSerializer(serializers.Serializer):
    predictions = PredictionSerializer(many=True)
    model_version = serializers.CharField()


class PredictErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    detail = serializers.CharField()
    errors = serializers.ListField(child=serializers.DictField(), required=False)
