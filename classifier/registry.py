"""The MLflow model registry: registering versions, moving aliases, fetching artifacts.

Every version is a folder with `weights.safetensors` and `config.json` (see
`classifier.inference.load_model_dir`); its registry entry is tagged with the weights' digest.
Each fetched version is kept under MODEL_CACHE_DIR/<model>/versions/<run>-<digest>, with notes of
the version each alias and the copy each version number last resolved to, so that a registry
outage never stops classification: the last known good copy serves.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from django.conf import settings
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

logger = logging.getLogger(__name__)


class RegistryUnavailable(Exception):
    """The registry did not answer, or has no such version or alias."""


@dataclass(frozen=True)
class ModelVersionInfo:
    version: str
    tags: dict[str, str]
    run_id: str | None

    @property
    def demo(self) -> bool:
        return self.tags.get("demo") == "true"

    @property
    def weights_sha256(self) -> str | None:
        return self.tags.get("weights_sha256")

    @property
    def identity(self) -> str:
        """What tells this version apart from any other registry's version of the same number."""
        return f"{self.run_id or 'norun'}-{(self.weights_sha256 or 'nodigest')[:16]}"


def client() -> MlflowClient:
    mlflow.set_tracking_uri(settings.MLFLOW_TRACKING_URI)
    mlflow.set_registry_uri(settings.MLFLOW_TRACKING_URI)
    return MlflowClient(settings.MLFLOW_TRACKING_URI, settings.MLFLOW_TRACKING_URI)


def experiment_id() -> str:
    """The training experiment, created with an explicit artifact location."""
    mlflow_client = client()
    experiment = mlflow_client.get_experiment_by_name(settings.MLFLOW_EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow_client.create_experiment(settings.MLFLOW_EXPERIMENT, artifact_location=settings.MLFLOW_ARTIFACT_ROOT)


def register_version(run_id: str, artifact_uri: str, tags: dict[str, str]) -> str:
    """Register the model folder logged by a run as a new version; returns its number."""
    mlflow_client = client()
    try:
        mlflow_client.get_registered_model(settings.MODEL_NAME)
    except MlflowException:
        mlflow_client.create_registered_model(settings.MODEL_NAME)
    version = mlflow_client.create_model_version(settings.MODEL_NAME, source=artifact_uri, run_id=run_id, tags=tags)
    return str(version.version)


def alias_version(alias: str) -> str | None:
    """The version an alias points at, or None when the alias is not set."""
    try:
        version = client().get_model_version_by_alias(settings.MODEL_NAME, alias)
    except MlflowException as exc:
        if _is_not_found(exc):
            return None
        raise RegistryUnavailable(str(exc)) from exc
    except Exception as exc:  # connection errors surface as many types
        raise RegistryUnavailable(str(exc)) from exc
    _remember_alias(alias, str(version.version))
    return str(version.version)


def set_alias(alias: str, version: str) -> None:
    mlflow_client = client()
    mlflow_client.get_model_version(settings.MODEL_NAME, version)  # raises for an unknown version
    mlflow_client.set_registered_model_alias(settings.MODEL_NAME, alias, version)
    _remember_alias(alias, version)


def describe_version(version: str) -> ModelVersionInfo:
    try:
        model_version = client().get_model_version(settings.MODEL_NAME, version)
    except Exception as exc:
        raise RegistryUnavailable(str(exc)) from exc
    return ModelVersionInfo(str(model_version.version), dict(model_version.tags), model_version.run_id)


def fetch_version(version: str) -> Path:
    """The local folder of a version, downloaded once and kept as last known good.

    Cached copies are keyed by what identifies a version (its MLflow run and the digest of its
    weights), never by its number alone: two registries, or one re-created, both have a version
    1. Whenever the registry answers, the copy is checked against what it records; when it does
    not, the copy this version number last resolved to serves.
    """
    try:
        info = describe_version(version)
    except RegistryUnavailable:
        known = _remembered_copy(version)
        if known is None:
            raise
        logger.warning("model registry unavailable; serving version %s from its last known good copy", version)
        return known
    target = cache_dir() / "versions" / info.identity
    if not _matches(target, info):
        _download(version, target, info)
        if not _matches(target, info):
            raise RegistryUnavailable(f"version {version}: the downloaded weights do not match the registry's digest")
    _remember_copy(version, info.identity)
    return target


def read_config(version: str) -> dict:
    """A version's serving config (config.json of its local copy)."""
    try:
        return json.loads((fetch_version(version) / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise RegistryUnavailable(f"version {version}: unreadable config: {exc}") from exc


def _matches(target: Path, info: ModelVersionInfo) -> bool:
    """Whether a cached copy is complete and has the weights the registry records for the version."""
    try:
        config = json.loads((target / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return info.weights_sha256 is None or config.get("weights_sha256") == info.weights_sha256


def _download(version: str, target: Path, info: ModelVersionInfo) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    try:
        client()
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{settings.MODEL_NAME}/{version}", dst_path=str(staging)
        )
        # A rename is atomic: a crash mid-download never leaves a half folder that looks complete.
        # A damaged copy is replaced; a good one another process fetched meanwhile is kept.
        if _matches(target, info):
            return
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except OSError:
        if not (target / "config.json").is_file():  # else another process fetched it first
            raise
    except Exception as exc:
        raise RegistryUnavailable(f"cannot fetch version {version}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remembered_copy(version: str) -> Path | None:
    """The cached copy version `version` resolved to the last time the registry answered."""
    try:
        identity = json.loads(_version_note(version).read_text())["identity"]
    except (OSError, ValueError, KeyError):
        return None
    target = cache_dir() / "versions" / identity
    return target if (target / "config.json").is_file() else None


def _remember_copy(version: str, identity: str) -> None:
    _write_note(_version_note(version), {"version": version, "identity": identity})


def _version_note(version: str) -> Path:
    return cache_dir() / "notes" / f"version-{version}.json"


def remembered_alias(alias: str) -> str | None:
    """The version the alias resolved to the last time the registry answered."""
    try:
        return json.loads(_alias_note(alias).read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def cache_dir() -> Path:
    return Path(settings.MODEL_CACHE_DIR) / settings.MODEL_NAME


def _alias_note(alias: str) -> Path:
    return cache_dir() / "notes" / f"alias-{alias}.json"


def _remember_alias(alias: str, version: str) -> None:
    _write_note(_alias_note(alias), {"version": version})


def _write_note(note: Path, content: dict) -> None:
    note.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{note.name}-", dir=note.parent)
    with os.fdopen(fd, "w") as out:
        json.dump(content, out)
    os.replace(tmp, note)


def _is_not_found(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") or "not found" in str(exc)


class TrainingRun:
    """An MLflow run in the training experiment: params, metrics, JSON documents, the model.

    Use as a context manager; a run left by an exception is marked FAILED.
    """

    def __init__(self, run_name: str):
        self.run_name = run_name
        self.run = None

    def __enter__(self) -> TrainingRun:
        client()
        self.run = mlflow.start_run(experiment_id=experiment_id(), run_name=self.run_name)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        mlflow.end_run(status="FAILED" if exc_type else "FINISHED")

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def log_params(self, params: dict) -> None:
        mlflow.log_params({key: value for key, value in params.items() if value is not None})

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        mlflow.log_metrics({key: float(value) for key, value in metrics.items() if value is not None}, step=step)

    def log_json(self, document: dict | list, name: str) -> None:
        mlflow.log_dict(document, name)

    def log_text(self, text: str, name: str) -> None:
        mlflow.log_text(text, name)

    def log_image(self, image, name: str) -> None:
        mlflow.log_image(image, artifact_file=name)

    def set_tags(self, tags: dict) -> None:
        mlflow.set_tags(tags)

    def register(self, model_dir: Path, tags: dict[str, str]) -> str:
        """Log the model folder as artifacts and register it as a new version."""
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
        return register_version(self.run_id, f"{self.run.info.artifact_uri}/model", tags)
