from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand

REVIEWER = [
    "reviews.view_reviewitem",
    "reviews.change_reviewitem",
    "reviews.view_reviewdecision",
    "reviews.view_quality",
    "batches.view_image",
    "batches.view_prediction",
    "batches.view_batchrun",
]
ROLES = {
    "operators": [
        "batches.add_image",
        "batches.view_image",
        "batches.add_batchrun",
        "batches.view_batchrun",
        "batches.view_prediction",
        "batches.view_failedimage",
        "batches.classify_image",
        "reviews.view_quality",
    ],
    "reviewers": REVIEWER,
    # Reviewers who give the deciding opinion when two reviewers disagree.
    "review leads": [*REVIEWER, "reviews.settle_dispute"],
}


class Command(BaseCommand):
    help = (
        "Create the 'operators', 'reviewers' and 'review leads' groups with exactly their permissions (safe to rerun)."
    )

    def handle(self, *args, **options):
        for name, codes in ROLES.items():
            group, _ = Group.objects.get_or_create(name=name)
            permissions = [
                Permission.objects.get(content_type__app_label=code.split(".")[0], codename=code.split(".")[1])
                for code in codes
            ]
            group.permissions.set(permissions)
            if options["verbosity"] > 0:
                self.stdout.write(f"group {name}: {', '.join(codes)}")
