"""The deployment files agree with the code: compose services, env example, documented settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_has_every_process(compose):
    assert set(compose["services"]) >= {
        "postgres",
        "redis",
        "migrate",
        "api",
        "worker",
        "beat",
        "sandbox-ehr",
        "flower",
    }
    assert compose["services"]["flower"]["profiles"] == ["flower"]


def test_migrations_run_once_before_the_processes(compose):
    services = compose["services"]
    assert services["migrate"]["command"] == ["slotsync", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name


def test_api_runs_several_workers_sharing_metrics(compose):
    api = compose["services"]["api"]
    assert any(part.startswith("--workers=") for part in api["command"])
    directory = api["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert any(mount.startswith(directory) for mount in api["tmpfs"])
    assert api["environment"]["SLOTSYNC_ENVIRONMENT"] == "production"


def test_long_running_services_have_health_checks(compose):
    for name in ("postgres", "redis", "api", "worker", "sandbox-ehr"):
        assert "healthcheck" in compose["services"][name], name
    assert "/healthz" in " ".join(compose["services"]["api"]["healthcheck"]["test"])


def test_graceful_stop_periods(compose):
    services = compose["services"]
    assert services["worker"]["stop_signal"] == "SIGTERM"
    grace = int(services["api"]["stop_grace_period"].rstrip("s"))
    drain = next(
        int(p.split("=", 1)[1]) for p in services["api"]["command"] if p.startswith("--graceful")
    )
    assert drain < grace  # in-flight requests finish before the container is killed


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        documented = f"`SLOTSYNC_{name.upper()}`"
        if field.validation_alias is not None:
            documented = "`PROMETHEUS_MULTIPROC_DIR`"
        assert documented in readme, name


def test_every_periodic_job_is_documented_in_the_readme():
    from app.settings import Settings
    from app.sync.periodic import periodic_jobs

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    jobs = periodic_jobs(Settings()) + periodic_jobs(Settings(ehr_fhir_version="r4"))
    for job in jobs:
        assert f"| `{job.name}` | `{job.task}` |" in readme, job.name
