"""Items decided before the decision log existed: status `confirmed`/`corrected` becomes status
`decided` with that outcome, and their one decision becomes the first row of their history."""

from django.db import migrations
from django.db.models import F

OLD_DECIDED = ("confirmed", "corrected")


def forwards(apps, schema_editor):
    ReviewItem = apps.get_model("reviews", "ReviewItem")
    ReviewDecision = apps.get_model("reviews", "ReviewDecision")
    for item in ReviewItem.objects.filter(status__in=OLD_DECIDED).select_related("prediction").iterator():
        ReviewDecision.objects.create(
            item=item,
            reviewer_id=item.reviewer_id,
            decided_at=item.reviewed_at or item.created_at,
            outcome=item.status,
            final_class=item.final_class,
            class_before=item.prediction.predicted_class,
            source="form",
            stage="first",
        )
        item.outcome, item.status = item.status, "decided"
        item.save(update_fields=["outcome", "status"])


def backwards(apps, schema_editor):
    ReviewItem = apps.get_model("reviews", "ReviewItem")
    ReviewDecision = apps.get_model("reviews", "ReviewDecision")
    ReviewItem.objects.filter(status="decided", outcome__in=OLD_DECIDED).update(status=F("outcome"))
    # Anything the old schema cannot say (a second opinion, a dispute, none of our categories,
    # unusable) waits for a decision again.
    ReviewItem.objects.exclude(status__in=("pending", *OLD_DECIDED)).update(status="pending", final_class="")
    ReviewDecision.objects.all().delete()




class Migration(migrations.Migration):
    dependencies = [("reviews", "0003_review_decisions_and_claims")]

    operations = [migrations.RunPython(forwards, backwards)]
