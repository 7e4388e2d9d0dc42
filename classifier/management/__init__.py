import getpass
import os

from django.core.management.base import BaseCommand


class ModelVersionCommand(BaseCommand):
    """A command whose own --version option (a model version) replaces Django's --version."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)


def command_actor(command: str) -> str:
    """Who moved an alias from the command line, for the audit table: the operating-system user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return f"{user} (manage.py {command})"
