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


class Retrain(models.Model):
    """One scheduled (or commanded) retrain: the candidate it trained, the figures the promotion
    gate compared on each evaluation folder, and whether it reached production, and why not."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        PROMOTED = "promoted", "Promoted"
        REFUSED = "refused", "Refused by the promotion gate"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    trigger = models.CharField(max_length=20, help_text="schedule, or the command that started it")
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.RUNNING, db_index=True)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    production_version = models.CharField(max_length=32, blank=True, help_text="Production when it started")
    candidate_version = models.CharField(max_length=32, blank=True)
    reviewed_photos = models.PositiveIntegerField(default=0, help_text="Reviewers' decisions trained on")
    figures = models.JSONField(default=dict, blank=True, help_text="The promotion gate's figures by folder")
    reason = models.TextField(blank=True, help_text="Why it was refused, failed or skipped")

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # Two retrain tasks starting at the same moment: the database lets only one run.
            models.UniqueConstraint(
                fields=["outcome"], condition=models.Q(outcome="running"), name="one_retrain_running"
            ),
        ]

    def __str__(self) -> str:
        return f"Retrain {self.pk} ({self.get_outcome_display()})"

    @property
    def succeeded(self) -> bool:
        """It trained and judged a candidate (promoted or fairly refused)."""
        return self.outcome in (self.Outcome.PROMOTED, self.Outcome.REFUSED)

    def accuracy_rows(self) -> list[dict]:
        """Candidate and production accuracy on each evaluation folder, for pages."""
        candidate, production = self.figures.get("candidate", {}), self.figures.get("production", {})
        rows = []
        for label, figures in candidate.items():
            row = {
                "folder": label,
                "candidate": figures.get("accuracy"),
                "production": production.get(label, {}).get("accuracy"),
            }
            row["text"] = f"{label} {row['candidate']:.1%}" + (
                "" if row["production"] is None else f" vs {row['production']:.1%}"
            )
            rows.append(row)
        return rows
