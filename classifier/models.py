from django.db import models
from django.utils import timezone


class AliasChange(models.Model):
    """Every move of a registry alias (production, staging): who, when, from, to and why."""

    class Action(models.TextChoices):
        BOOTSTRAP = "bootstrap", "Bootstrap"
        TRAIN = "train", "Trained"
        PROMOTE = "promote", "Promote"
        FORCED_PROMOTE = "forced_promote", "Promote (forced)"
        ROLLBACK = "rollback", "Rollback"

    model_name = models.CharField(max_length=200)
    alias = models.CharField(max_length=100)
    from_version = models.CharField(max_length=32, blank=True)
    to_version = models.CharField(max_length=32)
    action = models.CharField(max_length=20, choices=Action.choices)
    actor = models.CharField(max_length=150, help_text="User name, or the command that moved the alias")
    evaluation = models.JSONField(default=dict, blank=True, help_text="Figures the decision was based on")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.alias}: {self.from_version or '-'} -> {self.to_version} ({self.action})"
