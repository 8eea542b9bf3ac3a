"""The deployment files agree with the code and are safe to expose: compose services, secrets,
published ports, images, the Dockerfile, the env example and the documented settings.

Docker does not run in the test environment, so ``compose.yaml`` is validated against the
Compose Specification's JSON schema: ``tests/fixtures/compose-spec.json`` is
``schema/compose-spec.json`` of the GitHub repository compose-spec/compose-spec, vendored
as it is. Its properties are then asserted on the parsed YAML, with compose's ``${VAR}``,
``${VAR:-default}`` and ``${VAR:?message}`` interpolation resolved as compose would.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from sqlalchemy.engine import make_url

from app.cli import main as cli
from app.settings import Settings, get_settings
from tests.factories import OPEN_RULES
from tests.paths import REPO

COMPOSE_SCHEMA = REPO / "tests" / "fixtures" / "compose-spec.json"
# What an operator's .env must add to the example: the one required variable.
OPERATOR_ENV = {"SLOTSYNC_EHR_BASE_URL": "https://ehr.example.org/fhir"}
SLOTSYNC_PROCESSES = ("migrate", "api", "worker", "beat", "flower")
# Settings that hold secrets: SecretStr values and the API keys (kept out of repr).
SECRET_SETTINGS = {
    name
    for name, field in Settings.model_fields.items()
    if "SecretStr" in str(field.annotation) or not field.repr
}


class MissingVariable(LookupError):
    """``${VAR:?message}`` with VAR unset: compose refuses to start."""


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>\w+))"
)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation over a parsed compose file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, current = match["op"] or "", env.get(name)
        missing = not current if op.startswith(":") else current is None
        if op.endswith("-") and missing:
            return match["arg"]
        if op.endswith("?") and missing:
            raise MissingVariable(f"{name}: {match['arg']}")
        return current or ""

    return _VARIABLE.sub(replace, value)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def compose(raw: dict) -> dict:
    """compose.yaml as compose resolves it with the operator's .env and no other variable."""
    return interpolate(raw, OPERATOR_ENV)


def mounted_secrets(service: dict) -> dict[str, str]:
    """target file name -> top-level secret, for a service's ``secrets``."""
    mounted = {}
    for entry in service.get("secrets", []):
        if isinstance(entry, str):
            mounted[entry] = entry
        else:
            mounted[entry.get("target", entry["source"])] = entry["source"]
    return mounted


def command_text(service: dict) -> str:
    command = service.get("command", [])
    return command if isinstance(command, str) else " ".join(command)


def test_compose_file_follows_the_compose_specification(raw, compose):
    validator = jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    for document in (raw, compose):
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(document)]
        assert errors == []
    # the schema does catch mistakes: a misspelt key is refused
    assert not validator.is_valid({"services": {"api": {"imagee": "slotsync"}}})


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
    assert "healthcheck" not in services["migrate"]  # a one-shot: it exits, it is not probed
    for name in ("api", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name


def test_api_runs_several_workers_sharing_metrics(compose):
    api = compose["services"]["api"]
    assert any(part.startswith("--workers=") for part in api["command"])
    directory = api["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert any(mount.startswith(directory) for mount in api["tmpfs"])
    assert api["environment"]["SLOTSYNC_ENVIRONMENT"] == "production"


def test_every_long_running_service_has_a_health_check(compose):
    services = compose["services"]
    for name, service in services.items():
        if name != "migrate":
            assert "healthcheck" in service, name
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])
    # beat's check reads the schedule file beat is told to write
    schedule = command_text(services["beat"]).split("--schedule-file=", 1)[1].split()[0]
    assert f"glob.glob('{schedule}*')" in " ".join(services["beat"]["healthcheck"]["test"])


def test_graceful_stop_periods(compose):
    services = compose["services"]
    assert services["worker"]["stop_signal"] == "SIGTERM"
    grace = int(services["api"]["stop_grace_period"].rstrip("s"))
    drain = next(
        int(p.split("=", 1)[1]) for p in services["api"]["command"] if p.startswith("--graceful")
    )
    assert drain < grace  # in-flight requests finish before the container is killed


def test_secrets_are_compose_secret_files_kept_out_of_git(compose):
    files = {name: spec["file"] for name, spec in compose["secrets"].items()}
    assert set(files) == {
        "postgres_password",
        "redis_password",
        "slotsync_webhook_secret",
        "slotsync_proposal_secret",
        "slotsync_api_keys",
        "flower_basic_auth",
    }
    assert all(path == f"./secrets/{name}" for name, path in files.items())
    assert "/secrets/" in (REPO / ".gitignore").read_text().split()
    assert "secrets/" in (REPO / ".dockerignore").read_text().split()


def test_each_slotsync_process_gets_its_secrets_as_files_named_for_settings(compose):
    needed = {
        "slotsync_webhook_secret",
        "slotsync_proposal_secret",
        "slotsync_api_keys",
        "slotsync_database_password",
        "slotsync_redis_password",
    }
    for name in SLOTSYNC_PROCESSES:
        mounted = mounted_secrets(compose["services"][name])
        assert set(mounted) >= needed, name
        for target in mounted:
            if target.startswith("slotsync_"):  # read by Settings: the prefix rule
                assert target.removeprefix("slotsync_") in SECRET_SETTINGS, target
        # slotsync and the database/broker read one file each, so they always agree
        assert mounted["slotsync_database_password"] == "postgres_password"
        assert mounted["slotsync_redis_password"] == "redis_password"
    assert "secrets" not in compose["services"]["sandbox-ehr"]


def test_no_secret_is_a_plain_environment_value(compose):
    forbidden = {f"SLOTSYNC_{name.upper()}" for name in SECRET_SETTINGS}
    forbidden |= {"POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH"}
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        assert forbidden.isdisjoint(environment), name
        if "SLOTSYNC_DATABASE_URL" in environment:
            assert make_url(environment["SLOTSYNC_DATABASE_URL"]).password is None
            assert urlsplit(environment["SLOTSYNC_REDIS_URL"]).password is None
        assert "--basic-auth" not in command_text(service), name
    postgres = compose["services"]["postgres"]
    password_file = postgres["environment"]["POSTGRES_PASSWORD_FILE"]
    assert password_file == "/run/secrets/postgres_password"
    assert "postgres_password" in mounted_secrets(postgres)
    # the env example (the operator's .env) holds no secret either
    example = (REPO / "deploy" / "slotsync.env.example").read_text().splitlines()
    assigned = {line.partition("=")[0].strip() for line in example if "=" in line}
    assert forbidden.isdisjoint(assigned)


def test_redis_requires_a_password_and_keeps_an_append_only_file(compose):
    redis = compose["services"]["redis"]
    command = command_text(redis)
    assert '--requirepass "$(cat /run/secrets/redis_password)"' in command
    assert "--appendonly yes" in command
    assert "redis_password" in mounted_secrets(redis)
    assert "redisdata:/data" in redis["volumes"] and "redisdata" in compose["volumes"]
    check = " ".join(redis["healthcheck"]["test"])
    assert "REDISCLI_AUTH" in check and "/run/secrets/redis_password" in check
    assert "grep -q PONG" in check  # a refused ping (NOAUTH) exits 0 too


def test_the_api_trusts_forwarded_headers_only_from_configured_proxies(raw, compose):
    api = compose["services"]["api"]
    assert not any("forwarded-allow-ips" in part for part in api["command"])
    assert api["environment"]["SLOTSYNC_FORWARDED_ALLOW_IPS"] == "127.0.0.1"
    configured = interpolate(raw, {**OPERATOR_ENV, "SLOTSYNC_FORWARDED_ALLOW_IPS": "172.18.0.1"})
    assert configured["services"]["api"]["environment"]["SLOTSYNC_FORWARDED_ALLOW_IPS"] == (
        "172.18.0.1"
    )
    assert Settings().forwarded_allow_ips == "127.0.0.1"


@pytest.fixture
def uvicorn_config(monkeypatch) -> dict[str, Any]:
    """What ``slotsync serve`` hands to uvicorn (caught instead of serving)."""
    import app.cli.serve

    caught: dict[str, Any] = {}

    def serve(config: dict[str, Any], workers: int) -> int:
        caught.update(config)
        return 0

    monkeypatch.setattr(app.cli.serve, "serve", serve)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    get_settings.cache_clear()
    yield caught
    get_settings.cache_clear()


def test_serve_trusts_the_configured_proxies(uvicorn_config, monkeypatch):
    monkeypatch.setenv("SLOTSYNC_FORWARDED_ALLOW_IPS", "10.0.0.0/8,192.0.2.7")
    assert cli.main(["serve"]) == 0
    assert uvicorn_config["forwarded_allow_ips"] == "10.0.0.0/8,192.0.2.7"
    assert uvicorn_config["proxy_headers"] is True


def test_serve_trusts_only_loopback_by_default_and_the_flag_wins(uvicorn_config, monkeypatch):
    monkeypatch.delenv("SLOTSYNC_FORWARDED_ALLOW_IPS", raising=False)
    assert cli.main(["serve"]) == 0
    assert uvicorn_config["forwarded_allow_ips"] == "127.0.0.1"
    assert cli.main(["serve", "--forwarded-allow-ips", "192.0.2.9"]) == 0
    assert uvicorn_config["forwarded_allow_ips"] == "192.0.2.9"


def test_published_ports_listen_on_loopback_unless_configured(raw, compose):
    published = {
        name: service["ports"]
        for name, service in compose["services"].items()
        if "ports" in service
    }
    assert set(published) == {"api", "flower"}
    for name, ports in published.items():
        for port in ports:
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", name
            else:
                assert str(port).startswith("127.0.0.1:"), name
    exposed = interpolate(raw, {**OPERATOR_ENV, "SLOTSYNC_BIND_ADDRESS": "0.0.0.0"})
    assert exposed["services"]["api"]["ports"] == ["0.0.0.0:8000:8000"]
    assert exposed["services"]["flower"]["ports"] == ["127.0.0.1:5555:5555"]


def test_the_sandbox_ehr_is_only_in_the_demo_profile(raw, compose):
    services = compose["services"]
    assert services["sandbox-ehr"]["profiles"] == ["demo"]
    for name, service in services.items():
        if "demo" not in service.get("profiles", []):
            assert "sandbox-ehr" not in service.get("depends_on", {}), name
            assert "sandbox-ehr" not in service.get("links", []), name
    # removing it leaves nothing dangling
    rest = {k: v for k, v in services.items() if k != "sandbox-ehr"}
    for name, service in rest.items():
        assert set(service.get("depends_on", {})) <= set(rest), name
    # only the demo's image carries the sandbox's dependencies
    assert "--extra sandbox" in services["sandbox-ehr"]["build"]["args"]["EXTRAS"]
    for name in ("api", "worker", "beat"):
        build = services[name].get("build")
        args = build.get("args", {}) if isinstance(build, dict) else {}
        assert "sandbox" not in args.get("EXTRAS", ""), name
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'ARG EXTRAS="--extra ops"' in dockerfile
    # and the EHR is never the sandbox by default: the operator names it
    with pytest.raises(MissingVariable, match="SLOTSYNC_EHR_BASE_URL"):
        interpolate(raw, {})
    with pytest.raises(MissingVariable, match="SLOTSYNC_EHR_BASE_URL"):
        interpolate(raw, {"SLOTSYNC_EHR_BASE_URL": ""})
    for name in SLOTSYNC_PROCESSES:
        environment = services[name]["environment"]
        assert environment["SLOTSYNC_EHR_BASE_URL"] == OPERATOR_ENV["SLOTSYNC_EHR_BASE_URL"]


def test_the_rules_file_is_mounted_read_only(compose):
    for name in SLOTSYNC_PROCESSES:
        service = compose["services"][name]
        path = service["environment"]["SLOTSYNC_RULES_PATH"]
        mount = next(v for v in service["volumes"] if isinstance(v, dict) and v["target"] == path)
        assert mount["type"] == "bind" and mount["source"] == "./rules.yaml", name
        assert mount["read_only"] is True, name
        # a missing rules.yaml is an error, not an empty directory created in its place
        assert mount["bind"]["create_host_path"] is False, name
    assert "/rules.yaml" in (REPO / ".gitignore").read_text().split()


def test_images_are_pinned_to_exact_versions(compose):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    exact = re.compile(r"^\d+\.\d+(\.\d+)*(-[a-z0-9.]+)*$")
    for name, service in compose["services"].items():
        image, _, tag = service["image"].partition(":")
        assert tag and tag != "latest" and exact.match(tag), f"{name}: {service['image']}"
        if image == "slotsync":
            assert tag == version, name
    assert "digest" in (REPO / "compose.yaml").read_text()  # the deployer may add them
    dockerfile = (REPO / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M)
    assert base and re.fullmatch(r"python:3\.\d+\.\d+-slim-bookworm", base[1]), base


def test_the_image_installs_the_locked_dependencies_as_a_non_root_user(compose):
    dockerfile = (REPO / "Dockerfile").read_text()
    uv = re.search(r"pip install uv==(\d+)\.(\d+)\.(\d+)\b", dockerfile)
    assert uv and (int(uv[1]), int(uv[2])) >= (0, 9), "uv pinned to an exact release"
    assert re.search(r"^COPY .*\buv\.lock\b", dockerfile, re.M)
    installs = re.findall(r"uv (?:sync|export) [^\n]*", dockerfile)
    assert installs and all("--frozen" in line for line in installs)
    assert not re.search(r"pip install [\"']?\.", dockerfile)  # nothing resolved afresh
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    uid = re.search(rf"useradd [^\n]*--uid (\d+) [^\n]*\b{users[-1]}\b", dockerfile)
    assert uid and int(uid[1]) != 0
    assert dockerfile.index(f"USER {users[-1]}") < dockerfile.index("CMD ")
    # the API's metrics tmpfs belongs to that user
    assert f"uid={uid[1]}" in compose["services"]["api"]["tmpfs"][0]
    for name in SLOTSYNC_PROCESSES:
        assert "user" not in compose["services"][name], name  # no override back to root


@pytest.mark.skipif(shutil.which("openssl") is None, reason="make-secrets.sh needs openssl")
def test_the_env_example_with_generated_secrets_starts_in_production(
    compose, tmp_path: Path, monkeypatch
):
    """What the README says to do (copy the example, set the EHR, run make-secrets.sh, put a
    rules file) gives settings that production accepts, as the api container sees them."""
    script = REPO / "deploy" / "make-secrets.sh"
    subprocess.run(["sh", str(script)], cwd=tmp_path, check=True, capture_output=True)
    made = {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()}
    assert set(made) == {
        spec["file"].removeprefix("./secrets/") for spec in compose["secrets"].values()
    }
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    # a second run keeps every secret
    subprocess.run(["sh", str(script)], cwd=tmp_path, check=True, capture_output=True)
    assert made == {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()}

    api = compose["services"]["api"]
    run_secrets = tmp_path / "run-secrets"  # /run/secrets inside the container
    run_secrets.mkdir()
    for target, source in mounted_secrets(api).items():
        file = compose["secrets"][source]["file"].removeprefix("./")
        shutil.copy(tmp_path / file, run_secrets / target)
    for line in (REPO / "deploy" / "slotsync.env.example").read_text().splitlines():
        if line.startswith("SLOTSYNC_"):  # env_file, then the service's own environment
            name, _, value = line.partition("=")
            monkeypatch.setenv(name, value)
    for name, value in api["environment"].items():
        if name.startswith("SLOTSYNC_"):
            monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("SLOTSYNC_RULES_PATH", str(OPEN_RULES))
    monkeypatch.setenv("SLOTSYNC_SECRETS_DIR", str(run_secrets))

    settings = Settings()
    assert settings.environment == "production"
    assert any("slotsync/admin" in scopes for scopes in settings.api_keys.values())
    database_password = made["postgres_password"].strip()
    assert make_url(settings.effective_database_url).password == database_password
    assert urlsplit(settings.effective_redis_url).password == made["redis_password"].strip()
    assert len(set(made.values())) == len(made)  # every secret its own


def test_every_setting_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        documented = f"`SLOTSYNC_{name.upper()}`"
        if field.validation_alias is not None:
            documented = "`PROMETHEUS_MULTIPROC_DIR`"
        assert documented in readme, name
    assert "`SLOTSYNC_SECRETS_DIR`" in readme


def test_every_periodic_job_is_documented_in_the_readme():
    from app.settings import Settings
    from app.sync.periodic import periodic_jobs

    readme = (REPO / "README.md").read_text()
    jobs = periodic_jobs(Settings()) + periodic_jobs(Settings(ehr_fhir_version="r4"))
    for job in jobs:
        assert f"| `{job.name}` | `{job.task}` |" in readme, job.name
