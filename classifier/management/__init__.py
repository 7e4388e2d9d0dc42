from django.core.management.base import BaseCommand


class ModelVersionCommand(BaseCommand):
    """A command whose own --version option (a model version) replaces Django's --version."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)
