"""The review queue is the Django admin: filter, look, confirm or correct."""

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from batches.admin import thumbnail_tag

from . import services
from .models import ReviewItem


class ReviewDecisionForm(forms.ModelForm):
    final_class = forms.ChoiceField(label="Correct class", help_text="Keep the predicted class to confirm it")

    class Meta:
        model = ReviewItem
        fields = ["final_class"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        prediction = self.instance.prediction
        self.fields["final_class"].choices = [(name, name) for name in sorted(prediction.probabilities)]
        # Pre-select the predicted class, so that saving unchanged confirms it.
        self.initial["final_class"] = self.instance.final_class or prediction.predicted_class


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    form = ReviewDecisionForm
    list_display = [
        "id",
        "photo",
        "predicted_class",
        "confidence",
        "top3",
        "status",
        "final_class",
        "reviewer",
        "reviewed_at",
    ]
    list_filter = ["status", "reason", "prediction__predicted_class", "prediction__model_version"]
    list_select_related = ["prediction__image", "reviewer"]
    search_fields = ["prediction__image__original_name"]
    fields = [
        "large_photo",
        "original_name",
        "predicted_class",
        "confidence",
        "top3",
        "model_version",
        "reason",
        "final_class",
        "status",
        "reviewer",
        "reviewed_at",
    ]
    readonly_fields = [name for name in fields if name != "final_class"]  # the decision is the only input
    actions = ["confirm_selected"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        # The decision goes through the service, which records who and when; never a raw save.
        try:
            services.record_correction(obj, form.cleaned_data["final_class"], request.user)
        except services.ReviewError as exc:
            messages.error(request, str(exc))

    @admin.action(description="Confirm the predicted class of the selected items", permissions=["change"])
    def confirm_selected(self, request, queryset):
        count = services.confirm_predictions(queryset, request.user)
        messages.success(request, f"{count} predictions confirmed")

    @admin.display(description="Photo")
    def photo(self, obj):
        return thumbnail_tag(obj.prediction.image)

    @admin.display(description="Photo")
    def large_photo(self, obj):
        return thumbnail_tag(obj.prediction.image, size=160)

    @admin.display(description="Original name")
    def original_name(self, obj):
        return obj.prediction.image.original_name

    @admin.display(description="Predicted", ordering="prediction__predicted_class")
    def predicted_class(self, obj):
        return obj.prediction.predicted_class

    @admin.display(description="Confidence", ordering="prediction__confidence")
    def confidence(self, obj):
        return f"{obj.prediction.confidence:.1%}"

    @admin.display(description="Top 3")
    def top3(self, obj):
        return format_html_join(mark_safe("<br>"), "{} {}", ((n, f"{p:.1%}") for n, p in obj.prediction.top(3)))

    @admin.display(description="Model version")
    def model_version(self, obj):
        return obj.prediction.model_version
