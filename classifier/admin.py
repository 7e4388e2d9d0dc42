import json

from django.contrib import admin
from django.utils.html import format_html

from .models import AliasChange, Retrain


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the product only (audit trails, results): the admin shows them, nobody edits.
    The other apps' admins build on it too."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AliasChange)
class AliasChangeAdmin(ReadOnlyAdmin):
    """The audit trail of the registry's aliases: read-only, nothing can be added or changed."""

    list_display = ["created_at", "alias", "from_version", "to_version", "action", "actor", "figures"]
    list_filter = ["alias", "action"]
    readonly_fields = [f.name for f in AliasChange._meta.fields if f.name != "evaluation"] + ["evaluation_figures"]
    exclude = ["evaluation"]

    @admin.display(description="Evaluation")
    def figures(self, obj):
        """Accuracy of the candidate (and of production) on each folder both were scored on."""
        candidate = obj.evaluation.get("candidate")
        if not candidate:
            return "-"
        production = obj.evaluation.get("production") or {}
        parts = []
        for label, figures in candidate.items():
            part = f"{label} {figures['accuracy']:.2%}"
            if label in production:
                part += f" vs {production[label]['accuracy']:.2%}"
            parts.append(part)
        text = "; ".join(parts)
        problems = obj.evaluation.get("problems")
        return f"{text} ({len(problems)} problems forced past)" if problems else text

    @admin.display(description="Evaluation figures")
    def evaluation_figures(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.evaluation, indent=2, sort_keys=True))


@admin.register(Retrain)
class RetrainAdmin(ReadOnlyAdmin):
    """The weekly retrains: each candidate, how it scored against production, and its outcome."""

    list_display = [
        "started_at",
        "trigger",
        "outcome",
        "candidate_version",
        "production_version",
        "reviewed_photos",
        "accuracy",
        "reason",
    ]
    list_filter = ["outcome", "trigger"]
    readonly_fields = [f.name for f in Retrain._meta.fields if f.name != "figures"] + ["gate_figures"]
    exclude = ["figures"]

    @admin.display(description="Accuracy (candidate vs production)")
    def accuracy(self, obj):
        return "; ".join(row["text"] for row in obj.accuracy_rows()) or "-"

    @admin.display(description="Promotion gate's figures")
    def gate_figures(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.figures, indent=2, sort_keys=True))
