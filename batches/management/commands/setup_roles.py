from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand

ROLES = {
    "operators": [
        "batches.add_image",
        "batches.view_image",
        "batches.add_batchrun",
        "batches.view_batchrun",
        "batches.view_prediction",
        "batches.view_failedimage",
        "batches.classify_image",
    ],
    "reviewers": [
        "reviews.view_reviewitem",
        "reviews.change_reviewitem",
        "batches.view_image",
        "batches.view_prediction",
        "batches.view_batchrun",
    ],
}


class Command(BaseCommand):
    help = "Create the 'operators' and 'reviewers' groups with exactly their permissions (safe to rerun)."

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
