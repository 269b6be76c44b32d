"""The deployment files agree with the code.

- every `SCRM_*` variable docker-compose.yml or the Helm chart sets for a service is a field of that
  service's Settings class (pydantic-settings ignores unknown variables, so a typo would pass silently);
- every container command names a console script of some package, or `python -m <module>` of a module
  that exists, and runs the service whose settings it is given;
- values.yaml is documented (`## @param`), matches values.schema.json and has every value the templates read;
- `helm lint` / `helm template` (when helm is installed) and `docker compose config` (when the compose
  plugin is installed) accept the files.
"""

from __future__ import annotations

import base64
import copy
import importlib
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
CHART = ROOT / "deploy" / "helm" / "scrm"
TEMPLATES = CHART / "templates"

# compose service -> the Settings class that reads its environment
COMPOSE_SETTINGS = {
    "ingest": "ingest.config:Settings",
    "trigger-engine": "trigger_engine.config:Settings",
    "sender": "sender.config:Settings",
    "segmenter": "segmenter.config:Settings",
    "reporting": "reporting.config:Settings",
    "simulator": "whatsapp_sim.config:SimulatorSettings",
}
# chart component folder -> Settings class
CHART_SETTINGS = {name: COMPOSE_SETTINGS[name] for name in ("ingest", "trigger-engine", "sender", "segmenter",
                                                            "reporting")}
# CONTRACT §1 default ports
CONTRACT_PORTS = {"ingest": 8080, "trigger-engine": 8081, "sender": 8082, "segmenter": 8083, "reporting": 8084,
                  "simulator": 8089}

# Rendering inputs that satisfy the chart's `required` values.
HELM_REQUIRED = {
    "kafka.bootstrap": "kafka-0.kafka:9092,kafka-1.kafka:9092",
    "postgresql.url": "postgresql+asyncpg://scrm:pw@postgres:5432/scrm",
    "whatsapp.appSecret": "app-secret",
    "whatsapp.verifyToken": "verify-token",
    "bootstrap.apiKey": "api-key",
    "bootstrap.phoneNumberId": "123456789",
    "bootstrap.accessToken": "access-token",
    "auth.internalToken": "internal-token",
    "auth.adminToken": "admin-token",
    "auth.secretsKey": "Y29tcG9zZS1kZXYtc2VjcmV0cy1rZXktMzItYnl0ZXM=",
    "auth.linkSecret": "link-secret-0123456789abcdef",  # required in prod (the chart's default environment)
}

ENV_NAME = re.compile(r"^\s*-?\s*name:\s*[\"']?(SCRM_[A-Za-z0-9_]+)", re.MULTILINE)
TPL_COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", re.DOTALL)
TPL_DEFINE = re.compile(r"\{\{-?\s*define\s+\"([^\"]+)\"\s*-?\}\}")
TPL_INCLUDE = re.compile(r"\b(?:include|template)\s+\"([^\"]+)\"")
TPL_COMMAND = re.compile(r"^\s*(command|args):\s*(\[.*\])\s*$", re.MULTILINE)
TPL_VALUES_ALIAS = re.compile(r"(\$\w+)\s*:=\s*\.Values\.([A-Za-z0-9_.]+)")
TPL_VALUES_REF = re.compile(r"(?<![\w$])\.Values\.([A-Za-z0-9_.]+)")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------

def settings_class(target: str) -> type:
    """Import `module:Class`; skip (not fail) while a service's config module has not been written yet."""
    module, _, name = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            pytest.skip(f"{module} does not exist yet ({exc}); its variables cannot be checked")
        raise
    cls = getattr(mod, name)
    assert cls.model_config.get("env_prefix") == "SCRM_", f"{target} no longer reads SCRM_* variables"
    return cls


def unknown_variables(variables: set[str], target: str) -> list[str]:
    """The SCRM_* names among `variables` that the Settings class `target` has no field for."""
    fields = set(settings_class(target).model_fields)
    return sorted(v for v in variables if v.startswith("SCRM_") and v.removeprefix("SCRM_").lower() not in fields)


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def scrm_image_services() -> dict[str, dict[str, Any]]:
    """Compose services that run the scrm image (built from the Dockerfile)."""
    return {name: svc for name, svc in compose()["services"].items() if "build" in svc}


@cache
def console_scripts() -> dict[str, str]:
    """Every `[project.scripts]` entry of the workspace: script name -> `module:function`."""
    scripts: dict[str, str] = {}
    for pyproject in [ROOT / "pyproject.toml", *sorted(ROOT.glob("*/*/pyproject.toml"))]:
        if ".venv" in pyproject.parts:
            continue
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        scripts.update(project.get("scripts", {}))
    return scripts


def module_file(module: str) -> Path | None:
    """The source file `python -m module` would run, searched in the workspace members' src/ folders."""
    rel = Path(*module.split("."))
    for src in sorted(ROOT.glob("*/*/src")):
        for candidate in (src / rel.with_suffix(".py"), src / rel / "__main__.py"):
            if candidate.is_file():
                return candidate
    return None


def command_problem(argv: list[str], settings_target: str | None = None) -> str | None:
    """Why `argv` cannot start the image's service (None when it can)."""
    if not argv:
        return "empty command"
    if argv[0] in console_scripts():
        module = console_scripts()[argv[0]].partition(":")[0]
    elif argv[0] in {"python", "python3"} and len(argv) >= 3 and argv[1] == "-m":
        module = argv[2]
        if module_file(module) is None:
            return f"`python -m {module}`: no such module under {ROOT}"
    else:
        return f"{argv[0]!r} is neither a [project.scripts] entry nor `python -m <module>`"
    if settings_target is not None:
        package = settings_target.partition(":")[0].split(".")[0]
        if module.split(".")[0] != package:
            return f"{argv} runs {module}, but the environment is meant for {settings_target}"
    return None


def strip_tpl_comments(text: str) -> str:
    return TPL_COMMENT.sub("", text)


@cache
def helper_defines() -> dict[str, str]:
    """Named templates of the chart: name -> body (up to the next define)."""
    defines: dict[str, str] = {}
    for tpl in sorted(TEMPLATES.rglob("*.tpl")):
        text = strip_tpl_comments(tpl.read_text())
        matches = list(TPL_DEFINE.finditer(text))
        for i, match in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            defines[match.group(1)] = text[match.end():end]
    return defines


def template_env_names(text: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """`name: SCRM_*` in `text` and in the named templates it includes (transitively)."""
    names = set(ENV_NAME.findall(text))
    for included in TPL_INCLUDE.findall(text):
        if included in helper_defines() and included not in seen:
            names |= template_env_names(helper_defines()[included], seen | {included})
    return names


def component_text(folder: str) -> str:
    return "\n".join(strip_tpl_comments(p.read_text()) for p in sorted((TEMPLATES / folder).glob("*.yaml")))


@cache
def values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


@cache
def schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def leaf_paths(node: Any, prefix: str = "") -> set[str]:
    """Dotted paths of the values: a non-empty map is descended into, anything else is a leaf."""
    if isinstance(node, dict) and node:
        paths: set[str] = set()
        for key, child in node.items():
            paths |= leaf_paths(child, f"{prefix}.{key}" if prefix else str(key))
        return paths
    return {prefix}


def has_path(node: Any, path: str) -> bool:
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


# A small JSON-Schema (draft-07 subset) validator for when `jsonschema` is not installed.
SUPPORTED_KEYWORDS = {"$schema", "title", "description", "type", "properties", "required", "additionalProperties",
                      "items", "enum", "minimum", "maximum", "minLength", "minItems", "pattern"}
JSON_TYPES: dict[str, tuple[type, ...]] = {"object": (dict,), "array": (list,), "string": (str,),
                                           "integer": (int,), "number": (int, float), "boolean": (bool,),
                                           "null": (type(None),)}


def is_type(value: Any, name: str) -> bool:
    if name in {"integer", "number"} and isinstance(value, bool):
        return False
    return isinstance(value, JSON_TYPES[name])


def mini_validate(value: Any, node: dict[str, Any], path: str = "") -> list[str]:
    where = path or "<root>"
    errors: list[str] = []
    if "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not any(is_type(value, t) for t in types):
            return [f"{where}: {value!r} is not of type {types}"]
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{where}: {value!r} is not one of {node['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in node and value < node["minimum"]:
            errors.append(f"{where}: {value} < minimum {node['minimum']}")
        if "maximum" in node and value > node["maximum"]:
            errors.append(f"{where}: {value} > maximum {node['maximum']}")
    if isinstance(value, str):
        if "minLength" in node and len(value) < node["minLength"]:
            errors.append(f"{where}: {value!r} is shorter than {node['minLength']}")
        if "pattern" in node and not re.search(node["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {node['pattern']!r}")
    if isinstance(value, dict):
        props = node.get("properties", {})
        errors += [f"{where}: {key!r} is required" for key in node.get("required", []) if key not in value]
        for key, child in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in props:
                errors += mini_validate(child, props[key], sub)
            elif node.get("additionalProperties") is False:
                errors.append(f"{where}: additional property {key!r} is not allowed")
            elif isinstance(node.get("additionalProperties"), dict):
                errors += mini_validate(child, node["additionalProperties"], sub)
    if isinstance(value, list):
        if "minItems" in node and len(value) < node["minItems"]:
            errors.append(f"{where}: fewer than {node['minItems']} items")
        if isinstance(node.get("items"), dict):
            for i, item in enumerate(value):
                errors += mini_validate(item, node["items"], f"{path}[{i}]")
    return errors


def schema_keywords(node: Any) -> set[str]:
    if not isinstance(node, dict):
        return set()
    found = set(node)
    for key, child in node.items():
        if key == "properties":
            for sub in child.values():
                found |= schema_keywords(sub)
        elif key in {"items", "additionalProperties"}:
            found |= schema_keywords(child)
    return found


def validate_values(data: Any) -> list[str]:
    """Errors of `data` against values.schema.json: jsonschema when installed, else the subset validator."""
    try:
        import jsonschema
    except ImportError:
        return mini_validate(data, schema())
    validator = jsonschema.Draft7Validator(schema())
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(data)]


def helm_binary() -> str:
    helm = shutil.which("helm")
    if helm is None:
        pytest.skip("helm is not installed on this machine: `helm lint` / `helm template` not run "
                    "(the text-level chart checks above still ran)")
    return helm


def helm_set_args(overrides: dict[str, str]) -> list[str]:
    args: list[str] = []
    for key, value in overrides.items():
        args += ["--set-string", f"{key}={value.replace(',', chr(92) + ',')}"]
    return args


def helm_template(overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), "template", "scrm", str(CHART), *helm_set_args(overrides)],
                          capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------------------------------
# (a) docker-compose.yml: variables and services
# --------------------------------------------------------------------------------------------------

def test_compose_runs_every_mapped_service_from_the_image() -> None:
    assert set(scrm_image_services()) == set(COMPOSE_SETTINGS), (
        "compose services built from the Dockerfile and COMPOSE_SETTINGS differ: map each to its Settings class")


@pytest.mark.parametrize("service", sorted(COMPOSE_SETTINGS))
def test_compose_variables_are_settings_fields(service: str) -> None:
    env = compose_env(compose()["services"][service])
    assert any(k.startswith("SCRM_") for k in env), f"{service} sets no SCRM_* variable"
    unknown = unknown_variables(set(env), COMPOSE_SETTINGS[service])
    assert not unknown, f"compose sets {unknown} for {service}, but {COMPOSE_SETTINGS[service]} has no such field"


@pytest.mark.parametrize("service", sorted(COMPOSE_SETTINGS))
def test_compose_ports_agree(service: str) -> None:
    """The port the service listens on = published target = healthcheck port; host default = CONTRACT §1."""
    svc = compose()["services"][service]
    port_var = f"SCRM_{service.upper().replace('-', '_')}_PORT"
    listen = int(compose_env(svc)[port_var])
    assert listen == CONTRACT_PORTS[service]
    published = [str(p) for p in svc.get("ports", [])]
    assert published == [f"${{{port_var}:-{listen}}}:{listen}"], published
    assert f"127.0.0.1:{listen}/readyz" in " ".join(svc["healthcheck"]["test"])


def test_compose_wiring() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"] == "apache/kafka:3.9.0"
    assert services["postgres"]["image"] == "postgres:16-alpine"
    assert compose_env(services["kafka"])["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no healthcheck"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services and cond == {"condition": "service_healthy"}, (name, dep, cond)
    for name in ("ingest", "trigger-engine", "sender", "segmenter", "reporting"):
        env = compose_env(services[name])
        assert env["SCRM_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["SCRM_DATABASE_URL"] == "postgresql+asyncpg://scrm:scrm@postgres:5432/scrm"
        assert env["SCRM_INGEST_URL"] == "http://ingest:8080"
        assert {"kafka", "postgres"} <= set(services[name]["depends_on"])
    assert compose_env(services["sender"])["SCRM_WHATSAPP_BASE_URL"] == "http://simulator:8089"
    assert compose_env(services["simulator"])["SCRM_SIMULATOR_WEBHOOK_URL"] == "http://ingest:8080/v1/webhooks/whatsapp"
    # ingest verifies the signatures the simulator makes: both must get the same secret
    assert (compose_env(services["ingest"])["SCRM_WHATSAPP_APP_SECRET"]
            == compose_env(services["simulator"])["SCRM_WHATSAPP_APP_SECRET"])


# The installation's secrets (issue 7): who needs which.
SECRET_USERS = {"SCRM_INTERNAL_TOKEN": set(CHART_SETTINGS), "SCRM_ADMIN_TOKEN": {"ingest"},
                "SCRM_SECRETS_KEY": {"sender"}}
# Short links (issue 9, R-R4): ingest serves them, the trigger-engine writes them. In the chart they ride on
# "scrm.env.common" gated by the rendered file's folder (see test_chart_link_settings_are_gated_to_their_users),
# so the text-level include walk cannot tell who gets them: `helm template` checks it where helm exists.
LINK_USERS = {"ingest", "trigger-engine"}
COMPOSE_SECRET_USERS = {**SECRET_USERS, "SCRM_LINK_SECRET": LINK_USERS}


def test_compose_gives_the_installation_secrets_to_who_needs_them() -> None:
    """One internal token for every service (introspection refuses another), the operator token to ingest only,
    and a secrets key the sender can use as a Fernet key."""
    services = compose()["services"]
    for var, users in COMPOSE_SECRET_USERS.items():
        having = {name for name in COMPOSE_SETTINGS if var in compose_env(services[name])}
        assert having == users, (var, sorted(having))
    tokens = {compose_env(services[name])["SCRM_INTERNAL_TOKEN"] for name in CHART_SETTINGS}
    assert len(tokens) == 1, tokens
    default = re.fullmatch(r"\$\{SCRM_SECRETS_KEY:-(.+)\}", compose_env(services["sender"])["SCRM_SECRETS_KEY"])
    assert default, "SCRM_SECRETS_KEY must be overridable from the environment, with a working dev default"
    assert len(base64.urlsafe_b64decode(default.group(1))) == 32, "a Fernet key is 32 bytes, URL-safe base64"


def test_compose_link_settings_agree() -> None:
    """One link secret (overridable, dev default) for ingest and the trigger-engine; links written with one
    public base URL (default: ingest as the host reaches it), which the simulator's clicks rewrite to ingest."""
    services = compose()["services"]
    secrets = {compose_env(services[name])["SCRM_LINK_SECRET"] for name in LINK_USERS}
    assert secrets == {"${SCRM_LINK_SECRET:-compose-dev-link-secret}"}, secrets
    bases = {compose_env(services[name]).get("SCRM_PUBLIC_BASE_URL") for name in (*LINK_USERS, "simulator")}
    assert bases == {"${SCRM_PUBLIC_BASE_URL:-http://localhost:${SCRM_INGEST_PORT:-8080}}"}, bases
    simulator = compose_env(services["simulator"])
    assert simulator["SCRM_INGEST_URL"] == "http://ingest:8080"
    assert re.fullmatch(r"\$\{SCRM_SIMULATOR_CLICK_RATE:-0(\.\d+)?\}", simulator["SCRM_SIMULATOR_CLICK_RATE"])


# --------------------------------------------------------------------------------------------------
# (b) Helm templates: variables per component folder
# --------------------------------------------------------------------------------------------------

def test_chart_has_a_folder_per_component() -> None:
    folders = {p.name for p in TEMPLATES.iterdir() if p.is_dir()}
    assert folders == set(CHART_SETTINGS)
    for folder in folders:
        assert {"deployment.yaml", "service.yaml"} <= {p.name for p in (TEMPLATES / folder).iterdir()}
    for path in TEMPLATES.rglob("*.yaml"):  # one resource per template file
        assert len(re.findall(r"^kind:", path.read_text(), re.MULTILINE)) <= 1, path


@pytest.mark.parametrize("var", sorted(SECRET_USERS))
def test_chart_gives_the_installation_secrets_to_who_needs_them(var: str) -> None:
    having = {folder for folder in CHART_SETTINGS if var in template_env_names(component_text(folder))}
    assert having == SECRET_USERS[var], (var, sorted(having))


def test_chart_link_settings_are_gated_to_their_users() -> None:
    """The link environment is in "scrm.env.common" only behind "scrm.links.user", which names exactly the
    template folders of LINK_USERS; the link secret comes from the auth Secret under its own key."""
    common = helper_defines()["scrm.env.common"]
    gate = re.search(r'\{\{-?\s*if include "scrm\.links\.user" \.\s*\}\}\s*\{\{ include "scrm\.env\.links" \. \}\}'
                     r'\s*\{\{-?\s*end\s*\}\}', common)
    assert gate, "scrm.env.links must be included only behind scrm.links.user"
    assert common.count("scrm.env.links") == 1
    folders = set(re.findall(r'contains "/templates/([a-z-]+)/" \.Template\.Name', helper_defines()["scrm.links.user"]))
    assert folders == LINK_USERS
    links = helper_defines()["scrm.env.links"]
    assert template_env_names(links) == {"SCRM_LINK_SECRET", "SCRM_PUBLIC_BASE_URL"}
    assert '"key" "linkSecret"' in links and ".Values.links.publicBaseUrl" in links
    assert '"linkSecret" "link-secret"' in helper_defines()["scrm.auth.secretKey"]
    assert "link-secret:" in helper_defines()["scrm.secretData"]
    for folder in set(CHART_SETTINGS) - LINK_USERS:
        assert not template_env_names(component_text(folder).replace("scrm.env.common", "")) & {
            "SCRM_LINK_SECRET", "SCRM_PUBLIC_BASE_URL"}, folder


def test_chart_helpers_are_namespaced() -> None:
    assert helper_defines(), "no named templates found in templates/_helpers.tpl"
    assert all(name.startswith("scrm.") for name in helper_defines()), sorted(helper_defines())


@pytest.mark.parametrize("folder", sorted(CHART_SETTINGS))
def test_chart_variables_are_settings_fields(folder: str) -> None:
    names = template_env_names(component_text(folder))
    port_var = f"SCRM_{folder.upper().replace('-', '_')}_PORT"
    assert {port_var, "SCRM_KAFKA_BOOTSTRAP", "SCRM_DATABASE_URL"} <= names, f"{folder}: found only {sorted(names)}"
    unknown = unknown_variables(names, CHART_SETTINGS[folder])
    assert not unknown, f"templates/{folder} set {unknown}, but {CHART_SETTINGS[folder]} has no such field"


# --------------------------------------------------------------------------------------------------
# (c) commands
# --------------------------------------------------------------------------------------------------

def test_console_scripts_are_found() -> None:
    assert {"ingest", "trigger-engine", "sender", "segmenter", "reporting"} <= set(console_scripts())


@pytest.mark.parametrize("service", sorted(COMPOSE_SETTINGS))
def test_compose_commands_start_the_service(service: str) -> None:
    command = compose()["services"][service].get("command")
    assert command, f"{service} has no command (the image's default would run ingest)"
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    assert command_problem(argv, COMPOSE_SETTINGS[service]) is None, command_problem(argv, COMPOSE_SETTINGS[service])


@pytest.mark.parametrize("folder", sorted(CHART_SETTINGS))
def test_chart_commands_start_the_service(folder: str) -> None:
    text = (TEMPLATES / folder / "deployment.yaml").read_text()
    found = {key: yaml.safe_load(value) for key, value in TPL_COMMAND.findall(text)}
    assert "command" in found, f"templates/{folder}/deployment.yaml: no inline `command: [...]` found"
    argv = [str(a) for a in found["command"] + found.get("args", [])]
    assert command_problem(argv, CHART_SETTINGS[folder]) is None, command_problem(argv, CHART_SETTINGS[folder])


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.MULTILINE)
    assert "uv sync --frozen --no-dev --all-packages" in text
    assert re.search(r"^USER (?!0\b|root\b)\S+", text, re.MULTILINE), "the image must not run as root"
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert cmd and command_problem(json.loads(cmd.group(1))) is None
    makefile = ROOT / "Makefile"
    if makefile.exists():
        make_uv = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", makefile.read_text(), re.MULTILINE)
        docker_uv = re.search(r"^ARG UV_VERSION=(\S+)", text, re.MULTILINE)
        assert make_uv and docker_uv and make_uv.group(1) == docker_uv.group(1), "uv versions differ"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv/", ".scrm/", ".git/", "bench/results/"} <= set(ignored)


# --------------------------------------------------------------------------------------------------
# (d) values.yaml, its documentation and its schema
# --------------------------------------------------------------------------------------------------

def test_values_match_the_schema() -> None:
    unsupported = schema_keywords(schema()) - SUPPORTED_KEYWORDS
    assert not unsupported, f"the fallback validator does not know {unsupported}: extend mini_validate"
    assert validate_values(values()) == []


def test_schema_rejects_bad_values() -> None:
    """The validation is not vacuous (with jsonschema or with the fallback)."""
    bad = copy.deepcopy(values())
    bad["environment"] = "staging"
    bad["ingest"]["replicaCount"] = "two"
    bad["kafka"]["bootstrapServers"] = "typo"
    del bad["sender"]["containerPort"]
    bad["auth"]["secretsKey"] = "not-a-fernet-key"
    errors = "\n".join(validate_values(bad))
    for expected in ("environment", "replicaCount", "bootstrapServers", "containerPort", "secretsKey"):
        assert expected in errors, errors
    assert mini_validate(bad, schema()), "the fallback validator accepts bad values"


@pytest.mark.parametrize(("value", "valid"), [
    ("", True), (HELM_REQUIRED["auth.secretsKey"], True),
    (f"{HELM_REQUIRED['auth.secretsKey']},{'A' * 43}=", True),  # rotation: the new key first, the old after it
    ("Y29tcG9zZS1kZXYtc2VjcmV0cy1rZXk=", False), (f"{HELM_REQUIRED['auth.secretsKey']},", False),
])
def test_schema_checks_the_secrets_key_shape(value: str, valid: bool) -> None:
    data = copy.deepcopy(values())
    data["auth"]["secretsKey"] = value
    assert (validate_values(data) == []) is valid, validate_values(data)


@pytest.mark.parametrize(("value", "valid"), [
    ("", True), ("https://s.shop.example", True), ("http://localhost:8080", True), ("https://shop.example/go", True),
    ("https://s.shop.example/", False), ("s.shop.example", False), ("https://s.example/l?x=1", False),
])
def test_schema_checks_the_public_base_url_shape(value: str, valid: bool) -> None:
    data = copy.deepcopy(values())
    data["links"]["publicBaseUrl"] = value
    assert (validate_values(data) == []) is valid, validate_values(data)


def test_values_are_documented() -> None:
    documented = set(re.findall(r"^\s*## @param (\S+)", (CHART / "values.yaml").read_text(), re.MULTILINE))
    undocumented = sorted(p for p in leaf_paths(values())
                          if not any(p == d or p.startswith(d + ".") for d in documented))
    assert not undocumented, f"values without `## @param`: {undocumented}"
    assert not sorted(d for d in documented if not has_path(values(), d)), "## @param for values that do not exist"
    camel = re.compile(r"^[a-z][A-Za-z0-9]*$")
    not_camel = sorted(p for p in leaf_paths(values()) if not all(camel.match(part) for part in p.split(".")))
    assert not not_camel, f"values must be camelCase: {not_camel}"


def test_templates_read_only_existing_values() -> None:
    missing: list[str] = []
    for path in sorted(TEMPLATES.rglob("*")):
        if not path.is_file():
            continue
        text = strip_tpl_comments(path.read_text())
        refs = set(TPL_VALUES_REF.findall(text))
        for alias, target in TPL_VALUES_ALIAS.findall(text):
            refs |= {f"{target}.{rest}" for rest in re.findall(re.escape(alias) + r"\.([A-Za-z0-9_.]+)", text)}
        missing += [f"{path.relative_to(CHART)}: .Values.{ref}" for ref in sorted(refs) if not has_path(values(), ref)]
    assert not missing, missing


# --------------------------------------------------------------------------------------------------
# (e) the real tools, when installed
# --------------------------------------------------------------------------------------------------

def test_helm_lint() -> None:
    helm = helm_binary()
    result = subprocess.run([helm, "lint", "--strict", str(CHART), *helm_set_args(HELM_REQUIRED)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_helm_template_renders_checked_deployments() -> None:
    result = helm_template(HELM_REQUIRED)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == set(CHART_SETTINGS)
    for component, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        names = {e["name"] for e in container["env"]}
        assert not unknown_variables(names, CHART_SETTINGS[component]), (component, sorted(names))
        argv = container["command"] + container.get("args", [])
        assert command_problem(argv, CHART_SETTINGS[component]) is None, command_problem(argv, CHART_SETTINGS[component])
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"]
        assert deployment["spec"]["replicas"] == values()[component_key(component)]["replicaCount"]
    services = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in docs if d["kind"] == "Service"}
    assert services == set(CHART_SETTINGS)
    for var in ("SCRM_LINK_SECRET", "SCRM_PUBLIC_BASE_URL"):
        having = {c for c, d in deployments.items()
                  if var in {e["name"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}}
        assert having == LINK_USERS, (var, sorted(having))


def test_helm_template_requires_the_link_secret_in_prod_only() -> None:
    without = {k: v for k, v in HELM_REQUIRED.items() if k != "auth.linkSecret"}
    refused = helm_template(without)
    assert refused.returncode != 0 and "auth.linkSecret" in refused.stderr, refused.stderr
    dev = helm_template({**without, "environment": "dev"})
    assert dev.returncode == 0, dev.stderr
    docs = [d for d in yaml.safe_load_all(dev.stdout) if d]
    assert all("link-secret" not in (d.get("data") or {}) for d in docs if d["kind"] == "Secret")
    env_names = {e["name"] for d in docs if d["kind"] == "Deployment"
                 for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "SCRM_LINK_SECRET" not in env_names and "SCRM_PUBLIC_BASE_URL" in env_names


def component_key(folder: str) -> str:
    head, *rest = folder.split("-")
    return head + "".join(part.title() for part in rest)


def test_helm_template_requires_the_external_services() -> None:
    without_kafka = {k: v for k, v in HELM_REQUIRED.items() if k != "kafka.bootstrap"}
    result = helm_template(without_kafka)
    assert result.returncode != 0 and "kafka.bootstrap" in result.stderr, result.stderr


def test_helm_template_with_existing_secrets_renders_no_chart_secret() -> None:
    result = helm_template({"kafka.bootstrap": "kafka:9092", "postgresql.existingSecret": "pg",
                            "whatsapp.existingSecret": "wa", "bootstrap.existingSecret": "boot",
                            "auth.existingSecret": "auth"})
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert not [d for d in docs if d["kind"] == "Secret"]
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for d in docs if d["kind"] == "Deployment"
            for e in d["spec"]["template"]["spec"]["containers"][0]["env"] if "valueFrom" in e}
    assert refs == {"pg", "wa", "boot", "auth"}


def test_docker_compose_config() -> None:
    docker = shutil.which("docker")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True) if docker else None
    if probe is None or probe.returncode != 0:
        pytest.skip("the `docker compose` plugin is not installed: `docker compose config` not run")
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
