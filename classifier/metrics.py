from prometheus_client import Gauge

# "livemax": with several processes, 1 as soon as one live process holds a model.
MODEL_LOADED = Gauge("model_loaded", "1 when a model is loaded in a serving process", multiprocess_mode="livemax")


def refresh() -> None:
    """Set the gauge from what this process holds (never loads a model)."""
    from . import inference

    MODEL_LOADED.set(1 if inference.loaded_state()["loaded"] else 0)
