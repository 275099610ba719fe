"""The docker compose deployment, checked by reading its files: no Docker engine is needed.

The compose file is validated against the official Compose Specification JSON schema, vendored in
``compose_spec/`` with its licence. ``docker compose config`` (Compose v2; v1 is not supported) also
validates the file when the docker CLI has the compose plugin; that test is skipped otherwise. The health
checks are run for real in ``tests/integration/test_healthchecks.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from partnerflow.core import clock
from partnerflow.core.config import Partnership, SftpTransport
from partnerflow.notify.sender import SenderSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
README = REPO / "README.md"
# https://github.com/compose-spec/compose-spec/blob/master/schema/compose-spec.json (see compose_spec/README.md)
COMPOSE_SCHEMA = Path(__file__).parent / "compose_spec" / "compose-spec.json"

AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
)
LONG_RUNNING = ("postgres", "redis", *AIRFLOW_SERVICES[:-1])
SHARED_AIRFLOW_SETTINGS = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
)
COMMON_ENV_ANCHOR = "x-airflow-env"

SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$|^AIRFLOW_CONN_")
# ${VAR}, ${VAR?message} or ${VAR:?message}: a value the deployer must supply, never a default.
REQUIRED_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}")
ANY_REFERENCE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<operator>:?[-?+])?[^}]*\}")
# What docker compose substitutes: $$ (a literal $), ${VAR} and ${VAR<operator><argument>}.
INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?+])(?P<argument>[^}]*))?\})"
)
URL_PASSWORD = re.compile(r"://[^:/@\s]+:(?P<password>[^@]*)@")
LOOKS_LIKE_A_SECRET = re.compile(r"BEGIN [A-Z ]*PRIVATE KEY|SG\.[\w-]{16,}|\b[0-9a-f]{48,}\b")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture
def dev_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_config: Partnership) -> dict[str, str]:
    """What ``DevStack.environment()`` gives every partnerflow process (its servers' ports faked, not started)."""
    from partnerflow_dev import _http, postgres, sftp_server, smtp_sink
    from partnerflow_dev.stack import DevStack

    for server in (postgres.EmbeddedPostgres, sftp_server.SftpServer, _http.BackgroundHttpServer, smtp_sink.SmtpSink):
        monkeypatch.setattr(server, "port", property(lambda self: 2222))
    return DevStack(var=tmp_path / "var", partnership=demo_config).environment()


def environment(service: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in (service.get("environment") or {}).items()}


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines as docker compose reads them (single quotes literal; `` #`` starts a comment)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        if value.startswith("'") and value.endswith("'"):
            value = value[1:-1]
        elif value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        values[name.strip()] = value
    return values


def required_variables(compose: dict[str, Any]) -> set[str]:
    """The variables docker-compose.yaml refuses to run without (``$${X}`` is an escaped ``$``, not one)."""
    return {
        match["name"]
        for text in _strings(compose)
        for match in ANY_REFERENCE.finditer(text)
        if match["operator"] in (None, "?", ":?")
    }


def test_the_official_celery_stack_is_all_there(services: dict[str, Any]) -> None:
    assert {"postgres", "redis", *AIRFLOW_SERVICES} <= set(services)
    commands = {name: services[name]["command"] for name in AIRFLOW_SERVICES[:-1]}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
        "airflow-worker": "celery worker",
    }
    for name in AIRFLOW_SERVICES:
        assert services[name]["build"]["context"] == ".", f"{name} must run the image built from our Dockerfile"


def test_every_airflow_service_merges_the_one_common_environment(compose: dict[str, Any]) -> None:
    root = yaml.compose(COMPOSE_FILE.read_text())
    anchor = _node_value(root, COMMON_ENV_ANCHOR)
    assert anchor is not None, f"{COMMON_ENV_ANCHOR} (the shared Airflow settings) is missing"
    for name in AIRFLOW_SERVICES:
        merged = _environment_nodes(root, name)
        assert any(node is anchor for node in merged), f"{name} does not merge *airflow-common-env"

    shared = compose[COMMON_ENV_ANCHOR]
    for name in AIRFLOW_SERVICES:
        env = environment(compose["services"][name])
        for setting in SHARED_AIRFLOW_SETTINGS:
            assert env.get(setting) == str(shared[setting]), f"{name}: {setting} differs from the shared value"


def test_tasks_reach_the_execution_api_on_the_api_server(services: dict[str, Any]) -> None:
    url = environment(services["airflow-worker"])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    match = re.fullmatch(r"http://(?P<host>[\w-]+):(?P<port>\d+)/execution/", url)
    assert match, url
    assert match["host"] == "airflow-apiserver"
    published = [str(port).rsplit(":", 1)[-1] for port in services["airflow-apiserver"]["ports"]]
    assert match["port"] in published


def test_celery_executor_with_a_redis_broker_and_a_postgres_result_backend(services: dict[str, Any]) -> None:
    env = environment(services["airflow-worker"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379/")
    assert re.match(r"db\+postgresql://[^@]+@postgres(:5432)?/airflow$", env["AIRFLOW__CELERY__RESULT_BACKEND"])
    assert re.match(
        r"postgresql\+psycopg2://[^@]+@postgres(:5432)?/airflow$", env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )


def test_services_are_health_checked_and_start_in_order(services: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in AIRFLOW_SERVICES:
        depends_on = services[name]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["redis"]["condition"] == "service_healthy", name
        if name != "airflow-init":
            assert depends_on["airflow-init"]["condition"] == "service_completed_successfully", name
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"


def test_init_migrates_airflow_and_the_warehouse_before_anything_starts(services: dict[str, Any]) -> None:
    init = services["airflow-init"]
    script = "\n".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    env = environment(init)
    assert env["_AIRFLOW_DB_MIGRATE"] == "true"
    assert env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert "airflow db check-migrations" in script
    assert "partnerflow migrate" in script
    assert "PARTNERFLOW_WAREHOUSE_URL" in env
    # The Submissions page's permission, for the FAB auth manager this file configures, after Airflow's schema.
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("FabAuthManager")
    grant = script.index("python -m partnerflow.airflow.access Admin Op")
    assert script.index("airflow db check-migrations") < grant


def test_postgres_creates_the_warehouse_database_beside_airflows(
    services: dict[str, Any], env_example: dict[str, str]
) -> None:
    postgres = services["postgres"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in postgres["volumes"]}
    init_dir = REPO / mounts["/docker-entrypoint-initdb.d"]
    scripts = sorted(init_dir.glob("*.sql"))
    assert scripts, f"no init SQL in {init_dir}"
    sql = "\n".join(script.read_text() for script in scripts)
    assert re.search(r"CREATE DATABASE warehouse OWNER partnerflow", sql)
    assert r"\getenv warehouse_password WAREHOUSE_DB_PASSWORD" in sql
    assert "WAREHOUSE_DB_PASSWORD" in environment(postgres)
    assert environment(postgres)["POSTGRES_DB"] == "airflow"
    assert re.fullmatch(
        r"postgresql\+psycopg://partnerflow:\$\{WAREHOUSE_DB_PASSWORD\}@postgres:5432/warehouse",
        env_example["PARTNERFLOW_WAREHOUSE_URL"],
    )


def test_compose_holds_no_literal_secret(services: dict[str, Any]) -> None:
    for service_name, service in services.items():
        for name, value in environment(service).items():
            if SECRET_NAME.search(name):
                assert REQUIRED_REFERENCE.fullmatch(value), (
                    f"{service_name}: {name} must be a required ${{VAR:?...}} reference, not {value!r}"
                )
            for match in URL_PASSWORD.finditer(value):
                assert REQUIRED_REFERENCE.fullmatch(match["password"]), f"{service_name}: {name} has a literal password"
    for path in (COMPOSE_FILE, DOCKERFILE, ENV_EXAMPLE):
        assert not LOOKS_LIKE_A_SECRET.search(path.read_text()), f"{path.name} contains something like a secret"


def test_workers_get_every_partnerflow_setting_the_dev_stack_sets(
    services: dict[str, Any], dev_environment: dict[str, str]
) -> None:
    worker = environment(services["airflow-worker"])
    settings = {name for name in dev_environment if name.startswith("PARTNERFLOW_")}
    assert settings, "DevStack.environment() sets no PARTNERFLOW_* variable"
    assert settings <= set(worker), f"missing on the workers: {sorted(settings - set(worker))}"
    assert worker["PARTNERFLOW_VAR"].startswith("/"), "PARTNERFLOW_VAR is a path inside the container"


def test_workers_and_the_triggerer_get_a_connection_for_every_feed(
    services: dict[str, Any], dev_environment: dict[str, str], demo_config: Partnership
) -> None:
    worker = environment(services["airflow-worker"])
    triggerer = environment(services["airflow-triggerer"])
    connections = {name for name in dev_environment if name.startswith("AIRFLOW_CONN_")}
    assert connections <= set(worker), f"missing on the workers: {sorted(connections - set(worker))}"
    for feed in demo_config.feeds:
        if isinstance(feed.transport, SftpTransport):
            variable = f"AIRFLOW_CONN_{feed.transport.connection.upper()}"
            assert variable in triggerer, f"the SFTP watcher of {feed.id} needs {variable} in the triggerer"


def test_workers_run_in_utc_share_the_var_volume_and_can_scale(compose: dict[str, Any]) -> None:
    worker = compose["services"]["airflow-worker"]
    env = environment(worker)
    assert env["TZ"] == "UTC"
    assert "container_name" not in worker and "ports" not in worker, "a fixed name or port stops --scale"
    named_volumes = set(compose["volumes"])
    mounts = {target: source for source, target, *_ in (volume.split(":") for volume in worker["volumes"])}
    assert mounts.get(env["PARTNERFLOW_VAR"]) in named_volumes, "PARTNERFLOW_VAR must be a named volume"


def test_the_sftp_key_is_a_read_only_secret_on_workers_and_triggerer(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    secrets = compose["secrets"]
    for name in ("airflow-worker", "airflow-triggerer"):
        assert set(compose["services"][name]["secrets"]) <= set(secrets)
    for variable, value in env_example.items():
        if not variable.startswith("AIRFLOW_CONN_"):
            continue
        connection = json.loads(value)
        if connection["conn_type"] == "sftp":
            extra = connection["extra"]
            assert extra["host_key"].startswith("ssh-"), f"{variable} must pin the server's host key"
            assert "no_host_key_check" not in extra
            key_file = Path(extra["key_file"])
            assert key_file.parent == Path("/run/secrets") and key_file.name in secrets, variable
        if "password" in connection:
            assert connection["password"].startswith("REPLACE_WITH_"), f"{variable} holds a real-looking secret"


def test_env_example_lists_every_required_setting_with_no_secret_filled_in(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    missing = required_variables(compose) - set(env_example)
    assert not missing, f".env.example lacks {sorted(missing)}"
    for name, value in env_example.items():
        if SECRET_NAME.search(name) and not name.startswith("AIRFLOW_CONN_"):
            assert value == "", f".env.example must leave {name} empty"


def test_a_copied_env_example_emails_nobody_off_the_allow_list(
    compose: dict[str, Any], env_example: dict[str, str], demo_config: Partnership, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production is a choice made on purpose: neither .env.example as copied nor a missing value is one."""
    monkeypatch.setenv("PARTNERFLOW_SENDGRID_API_KEY", "SG.test")

    def environment_of(value: str | None) -> tuple[bool, bool]:
        """What partnerflow's code makes of PARTNERFLOW_ENVIRONMENT=value: (emails anyone, clock is real)."""
        if value is None:
            monkeypatch.delenv("PARTNERFLOW_ENVIRONMENT", raising=False)
        else:
            monkeypatch.setenv("PARTNERFLOW_ENVIRONMENT", value)
        return SenderSettings.from_env(demo_config).production, clock.production()

    assert environment_of(env_example["PARTNERFLOW_ENVIRONMENT"]) == (False, False)
    # Without it in .env, the containers get compose's default, which is the code's own default.
    unset = {name: value for name, value in env_example.items() if name != "PARTNERFLOW_ENVIRONMENT"}
    in_containers = interpolate(compose["x-partnerflow-env"]["PARTNERFLOW_ENVIRONMENT"], unset)
    assert in_containers == "development"
    assert environment_of(in_containers) == environment_of(None) == (False, False)
    monkeypatch.delenv("PARTNERFLOW_ENVIRONMENT", raising=False)
    assert SenderSettings.from_env(demo_config).environment == "development"
    # Only the exact word turns email on.
    assert environment_of("production") == (True, True)
    assert environment_of("Production") == environment_of("staging") == (False, False)


def test_the_readme_says_what_partnerflow_environment_does(env_example: dict[str, str]) -> None:
    deploying = README.read_text().split("## Deploying", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in deploying.splitlines() if line.startswith("| `PARTNERFLOW_ENVIRONMENT`"))
    assert "`development`" in row and "staging" not in row, row
    assert "PARTNERFLOW_ENVIRONMENT=production" in deploying, "going live must be a documented step"
    assert f"`{env_example['PARTNERFLOW_ENVIRONMENT']}`" in row


def test_the_compose_file_is_valid_under_the_compose_specification(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    """As written, and as docker compose sees it once .env.example (every empty value filled in) is applied."""
    validator = compose_validator()
    settings = {name: value or f"dummy-{name.lower()}" for name, value in env_example.items()}
    for variant in (compose, interpolate(compose, settings)):
        errors = [
            f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(variant)
        ]
        assert not errors, "\n".join(errors)


def test_the_compose_schema_check_catches_mistakes(compose: dict[str, Any]) -> None:
    """The vendored schema is the strict one: a misspelt key or a wrong type is refused."""
    validator = compose_validator()
    worker = compose["services"]["airflow-worker"]
    mistakes = {
        "a top-level key compose does not know": {**compose, "service": {}},
        "a misspelt service key": _with_service(compose, "airflow-worker", {**worker, "healthckeck": {}}),
        "a health check that is a number": _with_service(
            compose, "airflow-worker", {**worker, "healthcheck": {**worker["healthcheck"], "test": 1}}
        ),
        "an unknown depends_on condition": _with_service(
            compose,
            "airflow-worker",
            {**worker, "depends_on": {"redis": {"condition": "service_ready"}}},
        ),
    }
    for mistake, document in mistakes.items():
        assert not validator.is_valid(document), f"the schema accepted {mistake}"


def test_the_image_is_the_official_airflow_image_of_the_locked_version() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    locked = next(package["version"] for package in lock["package"] if package["name"] == "apache-airflow")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    python = pyproject["tool"]["ruff"]["target-version"].removeprefix("py")
    python = f"{python[0]}.{python[1:]}"
    bases = re.findall(r"^FROM\s+(?:--\S+\s+)*(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert bases == [f"apache/airflow:{locked}-python{python}"]


def test_the_image_installs_the_lock_the_package_and_its_files(services: dict[str, Any]) -> None:
    dockerfile = DOCKERFILE.read_text()
    makefile_uv = re.search(r"^UV_VERSION\s*:=\s*(\S+)", (REPO / "Makefile").read_text(), flags=re.MULTILINE)
    assert makefile_uv and f"ghcr.io/astral-sh/uv:{makefile_uv[1]}," in dockerfile, "use the uv the Makefile pins"
    assert re.search(r"uv export .*--frozen --no-dev", dockerfile)
    assert "pip install --no-cache-dir --require-hashes -r" in dockerfile
    assert "pip install --no-cache-dir --no-deps -e /opt/partnerflow" in dockerfile
    for folder in ("plugins", "dags", "config", "expectations", "sql"):
        assert f"COPY {folder}/ /opt/partnerflow/{folder}/" in dockerfile
    dags_folder = environment(services["airflow-scheduler"])["AIRFLOW__CORE__DAGS_FOLDER"]
    assert dags_folder == "/opt/partnerflow/dags"


def compose_cli() -> list[str] | None:
    """Compose v2: the ``docker compose`` plugin, or its standalone ``docker-compose`` build.

    Compose v1 (``docker-compose`` 1.x, e.g. Debian 12's package) is not supported: it refuses the
    top-level ``name`` with "'name' does not match any of the regexes: '^x-'".
    """
    docker = shutil.which("docker")
    standalone = shutil.which("docker-compose")
    for cli in ([docker, "compose"] if docker else None, [standalone] if standalone else None):
        if cli is None:
            continue
        version = subprocess.run([*cli, "version", "--short"], capture_output=True, text=True, check=False)
        if version.returncode == 0 and re.match(r"v?[2-9]\.", version.stdout.strip()):
            return cli
    return None


@pytest.mark.skipif(compose_cli() is None, reason="no Compose v2 (docker compose) here")
def test_docker_compose_accepts_the_file_and_refuses_a_missing_secret(tmp_path: Path) -> None:
    cli = compose_cli()
    assert cli is not None
    key_file = tmp_path / "sftp_key"
    key_file.write_text("not a real key\n")
    values = read_env_file(ENV_EXAMPLE)
    values = {name: value or f"dummy-{name.lower()}" for name, value in values.items()}
    values["PARTNERFLOW_SFTP_KEY_FILE"] = str(key_file)

    def config(settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
        env_file = tmp_path / "dummy.env"
        env_file.write_text("".join(f"{name}='{value}'\n" for name, value in settings.items()))
        return subprocess.run(
            [*cli, "--project-directory", str(REPO), "-f", str(COMPOSE_FILE), "--env-file", str(env_file)]
            + ["--profile", "debug", "config", "-q"],
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    accepted = config(values)
    assert accepted.returncode == 0, accepted.stderr
    refused = config({name: value for name, value in values.items() if name != "PARTNERFLOW_PSEUDONYM_KEY"})
    assert refused.returncode != 0
    assert "set PARTNERFLOW_PSEUDONYM_KEY in .env" in refused.stderr


def compose_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert schema["$schema"].startswith("https://json-schema.org/draft-07/"), "the schema moved to another draft"
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """``value`` with every ``${...}`` substituted from ``variables`` as docker compose does it.

    A ``${VAR:?message}`` or ``${VAR?message}`` that is not satisfied raises ``LookupError(message)``.
    """
    if isinstance(value, dict):
        return {name: interpolate(item, variables) for name, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        current = variables.get(match["name"])
        operator, argument = match["operator"], match["argument"]
        present = bool(current) if operator and operator.startswith(":") else current is not None
        if operator in (":-", "-"):
            return current if present else argument
        if operator in (":?", "?"):
            if not present:
                raise LookupError(argument)
            return current
        if operator in (":+", "+"):
            return argument if present else ""
        return current or ""

    return INTERPOLATION.sub(substitute, value)


def _with_service(compose: dict[str, Any], name: str, service: dict[str, Any]) -> dict[str, Any]:
    return {**compose, "services": {**compose["services"], name: service}}


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return [value] if isinstance(value, str) else []


def _node_value(mapping: yaml.Node, key: str) -> yaml.Node | None:
    for key_node, value_node in mapping.value:
        if key_node.value == key:
            return value_node
    return None


def _merged(mapping: yaml.Node) -> list[yaml.Node]:
    """The mapping and every mapping merged into it with ``<<``, nearest first."""
    found = [mapping]
    merge = _node_value(mapping, "<<")
    if merge is not None:
        for source in merge.value if isinstance(merge, yaml.SequenceNode) else [merge]:
            found.extend(_merged(source))
    return found


def _environment_nodes(root: yaml.Node, service: str) -> list[yaml.Node]:
    """The mapping nodes that make up a service's environment, following YAML merges and aliases."""
    service_node = _node_value(_node_value(root, "services"), service)
    for mapping in _merged(service_node):
        env = _node_value(mapping, "environment")
        if env is not None:
            return _merged(env)
    return []


def test_every_airflow_service_sends_metrics_to_the_statsd_exporter(services: dict[str, Any]) -> None:
    """Airflow's metrics, partnerflow's among them, go by StatsD to statsd-exporter, mapped per feed."""
    import yaml

    exporter = services["statsd-exporter"]
    for name, service in services.items():
        if name.startswith("airflow-"):
            env = environment(service)
            assert env["AIRFLOW__METRICS__STATSD_ON"] == "${AIRFLOW_STATSD_ON:-true}", name
            assert env["AIRFLOW__METRICS__STATSD_HOST"] == "${AIRFLOW_STATSD_HOST:-statsd-exporter}", name
            assert env["AIRFLOW__METRICS__STATSD_PORT"] == "${AIRFLOW_STATSD_PORT:-9125}", name
            assert env["AIRFLOW__METRICS__STATSD_PREFIX"] == "airflow", name
    assert "9125/udp" in exporter["expose"]
    mapping_file = next(v.split(":")[0] for v in exporter["volumes"] if v.endswith("mapping.yml:ro"))
    mappings = yaml.safe_load((REPO / mapping_file).read_text())["mappings"]
    assert {"match": "airflow.partnerflow.*.*", "name": "partnerflow_$1", "labels": {"feed": "$2"}} in mappings
