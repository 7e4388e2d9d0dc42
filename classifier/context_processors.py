import logging

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)
CACHE_SECONDS = 60


def production_model(request) -> dict:
    """The production model's version and demo flag, for the banner on every page (cached a minute)."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {"production_model": cache.get_or_set("production_model_info", _describe, CACHE_SECONDS)}


def _describe() -> dict:
    from . import registry

    try:
        version = registry.alias_version(settings.MODEL_ALIAS)
        if version is None:
            return {"version": None, "demo": False, "available": False}
        return {"version": version, "demo": registry.describe_version(version).demo, "available": True}
    except registry.RegistryUnavailable:
        logger.warning("model registry unavailable while rendering a page")
        return {
            "version": registry.remembered_alias(settings.MODEL_ALIAS),
            "demo": False,
            "available": True,
            "registry_down": True,
        }
