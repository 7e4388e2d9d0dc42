import atexit
import os

from django.apps import AppConfig
from django.conf import settings


class ClassifierConfig(AppConfig):
    name = "classifier"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from .imaging import follow_pixel_limit

        follow_pixel_limit(settings.MAX_IMAGE_PIXELS)
        if settings.PROMETHEUS_MULTIPROC_DIR:
            from prometheus_client import multiprocess

            # A command (run_batch, train...) that exits must not leave its live gauges behind.
            atexit.register(lambda: multiprocess.mark_process_dead(os.getpid()))
