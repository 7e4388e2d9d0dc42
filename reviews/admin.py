"""The review queue in the admin: the list of items with their history, the change form and the
bulk confirm action. Every decision made here goes through `services.record_decision`, like the
desk's; the desk itself (reviews/desk.py) is where reviewers work through the queue."""

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils.formats import date_format
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime

from batches.admin import thumbnail_tag
from classifier.admin import ReadOnlyAdmin

from . import services
from .models import Outcome, ReviewDecision, ReviewItem

NOT_A_CLASS = [
    (Outcome.NONE_OF_OUR_CATEGORIES.value, "None of our categories"),
    (Outcome.UNUSABLE.value, "Unusable photo (retake)"),
]


class ReviewDecisionForm(forms.ModelForm):
    decision = forms.ChoiceField(
        label="Decision", help_text="Keep the predicted class to confirm it; each save adds a decision to the history"
    )
    note = forms.CharField(
        label="Note", max_length=200, required=False, help_text="For “none of our categories”: what it is"
    )

    class Meta:
        model = ReviewItem
        fields = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        prediction = self.instance.prediction
        classes = [(name, name) for name in sorted(prediction.probabilities)]
        self.fields["decision"].choices = [("Class", classes), ("Not one of our classes", NOT_A_CLASS)]
        # Pre-select the current answer (the predicted class at first), so that saving unchanged confirms it.
        self.initial["decision"] = self.instance.final_class or self.instance.outcome or prediction.predicted_class


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    form = ReviewDecisionForm
    list_display = [
        "id",
        "photo",
        "predicted_class",
        "confidence",
        "top3",
        "reason",
        "status",
        "outcome",
        "final_class",
        "reviewer",
        "reviewed_at",
    ]
    list_filter = ["status", "outcome", "reason", "prediction__predicted_class", "prediction__model_version"]
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
        "status",
        "outcome",
        "final_class",
        "reviewer",
        "reviewed_at",
        "claimed_by",
        "claimed_until",
        "history",
        "decision",
        "note",
    ]
    readonly_fields = [name for name in fields if name not in ("decision", "note")]  # the decision is the only input
    actions = ["confirm_selected"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        # The decision goes through the service, which appends it to the history; never a raw save.
        try:
            services.record_decision(
                obj.pk,
                request.user,
                form.cleaned_data["decision"],
                source=ReviewDecision.Source.FORM,
                note=form.cleaned_data["note"],
            )
        except services.ReviewError as exc:
            request.review_refused = True
            messages.error(request, f"Not saved: {exc}")

    def response_change(self, request, obj):
        if getattr(request, "review_refused", False):
            return HttpResponseRedirect(request.path)  # back to the form, with the reason shown
        return super().response_change(request, obj)

    @admin.action(description="Confirm the predicted class of the selected items", permissions=["change"])
    def confirm_selected(self, request, queryset):
        count, refused = services.confirm_predictions(queryset, request.user)
        messages.success(request, f"{count} predictions confirmed")
        for item, reason in refused:
            messages.warning(request, f"Not confirmed: {item.prediction.image}: {reason}")

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

    @admin.display(description="History of decisions")
    def history(self, obj):
        """Every decision on the item, as made, the oldest first."""
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    date_format(localtime(d.decided_at), "SHORT_DATETIME_FORMAT"),
                    d.reviewer or "",
                    d.get_outcome_display(),
                    d.final_class or "–",
                    d.class_before,
                    d.get_stage_display(),
                    {True: "agrees", False: "disagrees"}.get(d.agrees, ""),
                    f"{d.get_source_display()}" + (f", {d.seconds:.1f} s" if d.seconds is not None else ""),
                    d.note,
                )
                for d in obj.decisions.select_related("reviewer").order_by("decided_at", "id")
            ),
        )
        if not rows:
            return "No decision yet"
        head = mark_safe(
            "<table class='decision-history'><thead><tr><th>When</th><th>Reviewer</th><th>Outcome</th><th>Class</th>"
            "<th>Class before</th><th>Opinion</th><th>Compared</th><th>From</th><th>Note</th></tr></thead><tbody>"
        )
        return head + rows + mark_safe("</tbody></table>")

    @admin.display(description="Model version")
    def model_version(self, obj):
        return obj.prediction.model_version


@admin.register(ReviewDecision)
class ReviewDecisionAdmin(ReadOnlyAdmin):
    """Every decision ever made, as made (the log; nothing here can be changed)."""

    list_display = [
        "decided_at",
        "item",
        "reviewer",
        "outcome",
        "final_class",
        "class_before",
        "stage",
        "agrees",
        "source",
        "seconds",
    ]
    list_filter = ["outcome", "stage", "source", "reviewer"]
    list_select_related = ["item__prediction__image", "reviewer"]
