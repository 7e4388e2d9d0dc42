from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = "Photos and batch runs"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from . import tasks

        # django-q2 does not re-deliver the task of a worker that died until `retry` has passed
        # (and does not count the death: its issue #327); a new worker re-queues running runs.
        post_spawn.connect(tasks.worker_started, dispatch_uid="batches.worker_started")
