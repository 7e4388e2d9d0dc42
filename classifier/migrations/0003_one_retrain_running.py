from django.db import migrations, models
from django.utils import timezone


def fail_all_but_the_newest_running(apps, schema_editor):
    """Before the constraint: of several `running` records only the newest can be alive."""
    Retrain = apps.get_model("classifier", "Retrain")
    running = list(Retrain.objects.filter(outcome="running").order_by("-started_at", "-id").values_list("id", flat=True))
    Retrain.objects.filter(id__in=running[1:]).update(
        outcome="failed", reason="its worker stopped before it finished", finished_at=timezone.now()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("classifier", "0002_retrain"),
    ]

    operations = [
        migrations.RunPython(fail_all_but_the_newest_running, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="retrain",
            constraint=models.UniqueConstraint(
                condition=models.Q(("outcome", "running")), fields=("outcome",), name="one_retrain_running"
            ),
        ),
    ]
