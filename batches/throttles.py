"""Request rates per user (or per address, for anonymous clients) on the API's costly calls:
`/predict` (API_THROTTLE_PREDICT) and the endpoints that store photos or start runs
(API_THROTTLE_WRITES). Reading is not throttled. A refused request is a 429 whose JSON says when
to try again. Counts live in the cache (per process with the default local-memory cache)."""

from django.conf import settings
from rest_framework.throttling import UserRateThrottle


class SettingsRateThrottle(UserRateThrottle):
    setting = ""

    def get_rate(self):
        return getattr(settings, self.setting) or None  # empty: no limit


class PredictThrottle(SettingsRateThrottle):
    scope = "predict"
    setting = "API_THROTTLE_PREDICT"


class WriteThrottle(SettingsRateThrottle):
    """Counts only requests that change something (POST, PUT, PATCH, DELETE)."""

    scope = "writes"
    setting = "API_THROTTLE_WRITES"

    def allow_request(self, request, view):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        return super().allow_request(request, view)
