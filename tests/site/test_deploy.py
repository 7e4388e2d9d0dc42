"""The container deployment, checked as far as this machine can without a container daemon:
deploy/compose.yaml starts only our entry points, sets only settings the product reads, keeps
the photos, the inbox and the working files on named volumes, and the Dockerfile builds a
non-root image without build tools in its final stage."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from django.conf import settings
from django.core.management import get_commands

ROOT = Path(settings.BASE_DIR)
COMPOSE = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
# Services that run our image; the others are stock images (PostgreSQL, Prometheus, Grafana).
APP_SERVICES = {"setup", "web", "workers"}


def names_read() -> set[str]:
    """Every environment variable the product reads: the settings, the scripts in bin/ and gunicorn's config."""
    names = set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', (ROOT / "refundsite" / "settings.py").read_text()))
    for path in [ROOT / "refundsite" / "settings.py", ROOT / "refundsite" / "gunicorn.conf.py"]:
        names |= set(re.findall(r'os\.environ(?:\.get)?[\[(]\s*"([A-Z0-9_]+)"', path.read_text()))
    for script in (ROOT / "bin").iterdir():
        names |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", script.read_text()))
    return names


def test_compose_runs_our_image_with_our_entry_points_only():
    services = COMPOSE["services"]
    assert APP_SERVICES | {"db", "prometheus", "grafana"} == set(services)
    commands = set(get_commands())
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"]["context"] == ".." and (ROOT / "Dockerfile").is_file()
        command = service["command"]
        assert (ROOT / command[0]).is_file(), f"{name}: {command[0]} is not one of our scripts"
        if command[0] == "bin/manage":
            assert command[1] in commands, f"{name}: manage.py {command[1]} does not exist"
    assert services["workers"]["command"] == ["bin/manage", "workers"]
    assert services["web"]["command"] == ["bin/web"] and services["setup"]["command"] == ["bin/setup"]
    # The web and the workers start once the set-up has finished, on a healthy database.
    for name in ("web", "workers"):
        assert services[name]["depends_on"]["setup"]["condition"] == "service_completed_successfully"


def test_every_variable_compose_sets_is_one_the_product_reads():
    read = names_read()
    for name in APP_SERVICES:
        unknown = set(COMPOSE["services"][name]["environment"]) - read
        assert not unknown, f"{name} sets variables the product never reads: {sorted(unknown)}"
    # Secrets are required, never defaulted.
    environment = COMPOSE["services"]["web"]["environment"]
    for secret in ("SECRET_KEY", "METRICS_TOKEN"):
        assert ":?" in environment[secret], f"{secret} must be required"


def test_the_photos_the_inbox_and_the_working_files_are_on_named_volumes():
    volumes = set(COMPOSE["volumes"])
    for name in APP_SERVICES:
        service = COMPOSE["services"][name]
        environment = service["environment"]
        mounts = {}
        for entry in service["volumes"]:
            source, target = entry.split(":")[:2]
            mounts[target] = source
        for setting in ("MEDIA_ROOT", "INBOX_DIR", "VAR_DIR"):
            folder = environment[setting]
            assert mounts.get(folder) in volumes, f"{name}: {setting}={folder} is not on a named volume"
    # Prometheus reads our configuration and rules, Grafana the provisioned dashboard.
    prometheus = COMPOSE["services"]["prometheus"]["volumes"]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus
    grafana = COMPOSE["services"]["grafana"]["volumes"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/refundsite.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_the_prometheus_in_compose_scrapes_the_services_compose_starts():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"][0] for job in config["scrape_configs"]}
    assert targets == {"refundsite-web": "web:8000", "refundsite-workers": "workers:8001"}
    assert COMPOSE["services"]["workers"]["environment"]["WORKER_METRICS_PORT"] == "8001"
    web = config["scrape_configs"][0]
    assert web["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
    assert COMPOSE["secrets"]["metrics_token"] == {"environment": "METRICS_TOKEN"}


def test_the_image_runs_as_a_user_without_build_tools_and_cpu_wheels_by_default():
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    assert len(stages) == 2, "a build stage and a final stage"
    final = stages[-1]
    assert "build-essential" in stages[0] and not re.search(r"build-essential|gcc|apt-get install", final)
    assert re.search(r"^USER refundsite$", final, flags=re.M) and "useradd" in final
    assert re.search(r"^ARG TORCH=cpu$", stages[0], flags=re.M)
    assert "download.pytorch.org/whl/cpu" in stages[0]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"var", "media", ".venv", ".git"} <= set(ignored)


def test_every_setting_the_product_reads_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    read = set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', (ROOT / "refundsite" / "settings.py").read_text()))
    read |= set(
        re.findall(
            r'os\.environ(?:\.get)?[\[(]\s*"([A-Z0-9_]+)"', (ROOT / "refundsite" / "gunicorn.conf.py").read_text()
        )
    )
    undocumented = sorted(name for name in read if f"`{name}`" not in readme)
    assert not undocumented, f"settings missing from the README: {undocumented}"
