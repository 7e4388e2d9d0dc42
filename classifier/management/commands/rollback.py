from django.core.management.base import BaseCommand, CommandError

from classifier import services
from classifier.management import command_actor


class Command(BaseCommand):
    help = "Move the 'production' alias back to the version it pointed at before."

    def handle(self, *args, **options):
        try:
            change = services.rollback(command_actor("rollback"))
        except services.PromotionRefused as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"production: version {change.from_version} -> {change.to_version}"))
