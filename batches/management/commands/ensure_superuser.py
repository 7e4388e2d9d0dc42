import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first administrator if no user exists; its password goes to var/admin-password (mode 600)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, **options):
        users = get_user_model().objects
        if users.exists():
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser(options["username"], email="", password=password)
        path = settings.VAR_DIR / "admin-password"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(password + "\n")
        self.stdout.write(
            self.style.SUCCESS(f"Created the administrator '{options['username']}'; its password is in {path}")
        )
