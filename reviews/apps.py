from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "reviews"
    verbose_name = "Review queue"

    def ready(self) -> None:
        from batches.metrics import DATABASE_COLLECTORS

        from .metrics import ReviewCollector

        DATABASE_COLLECTORS.register(ReviewCollector())
