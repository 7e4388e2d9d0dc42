from rest_framework import serializers


class PredictJSONSerializer(serializers.Serializer):
    """Either stored images by id, or files inside the inbox folder by path."""

    image_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, allow_empty=False)
    image_paths = serializers.ListField(child=serializers.CharField(max_length=1024), required=False, allow_empty=False)

    def validate(self, attrs):
        if ("image_ids" in attrs) == ("image_paths" in attrs):
            raise serializers.ValidationError("send exactly one of image_ids, image_paths (or upload files)")
        return attrs


class PredictionSerializer(serializers.Serializer):
    input = serializers.CharField(help_text="The file name, image id or path this prediction is for")
    predicted_class = serializers.CharField()
    confidence = serializers.FloatField(help_text="Calibrated: of photos given 0.9, about 90% are right")
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
