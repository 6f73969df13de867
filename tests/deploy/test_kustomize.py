"""deploy/ as CI checks it: each Kustomize overlay builds with the machine's ``kubectl kustomize``, validates
offline against the Kubernetes schemas (``kubernetes-validate --strict``), and holds the properties the
deployment relies on — a restricted pod on a read-only root, probes and resources, no secret in the manifests,
one SQLite writer in the embedded overlay, shared stores in production — and the configuration the pod would
mount loads with the gateway's own loader.

Without kubectl the build cases are skipped with a plain message, except under CI (``CI`` set), where they
fail: CI must never pass by skipping. ``.ci/run`` installs kubectl when it is absent.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from gateway.cli.main import parser
from gateway.config.settings import load

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("embedded", "production")
# The oldest Kubernetes the manifests are meant for, and a recent one; both within kubernetes-validate's schemas.
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")
GATEWAY_UID = 10001  # the Dockerfile's user
SECRET_LIKE = ("DSN", "PASSWORD", "REDIS_URL", "TOKEN")
CREDENTIALS_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@\"']*:[^/\s@\"']+@")
KUBECTL_MISSING = "kubectl is not installed: the Kustomize build of deploy/ is not checked"

Doc = dict[str, Any]


def find_kubectl() -> str | None:
    """kubectl on PATH, else beside this Python (a kubectl installed into the venv by .ci/run)."""
    return shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))


def kubectl_or_skip() -> str:
    found = find_kubectl()
    if found:
        return found
    if "CI" in os.environ:
        pytest.fail(f"{KUBECTL_MISSING}; CI is set, and CI must build and validate deploy/, not skip it "
                    "(.ci/run installs kubectl when it is absent)", pytrace=False)
    pytest.skip(KUBECTL_MISSING)


@functools.cache
def _kustomize(kubectl: str, overlay: str) -> str:
    done = subprocess.run([kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"kubectl kustomize deploy/overlays/{overlay} failed:\n{done.stderr}"
    return done.stdout


def built(overlay: str) -> str:
    return _kustomize(kubectl_or_skip(), overlay)


def documents(overlay: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(built(overlay)) if doc]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


PROBES = ("startup", "liveness", "readiness")


def one(docs: list[Doc], kind: str) -> Doc:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    workloads = ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet")
    for doc in docs:
        if doc["kind"] in workloads:
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield doc["metadata"]["name"], doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            yield doc["metadata"]["name"], doc["spec"]


def deployment(docs: list[Doc], component: str = "gateway") -> Doc:
    """The one Deployment of that component (``app.kubernetes.io/component``): the gateway, or its workers."""
    found = [d for d in of_kind(docs, "Deployment")
             if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    assert len(found) == 1, f"expected one {component} Deployment, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def gateway_container(docs: list[Doc]) -> tuple[Doc, Doc]:
    spec = deployment(docs)["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == "gateway"]
    return spec, container


def mounted_file(spec: Doc, container: Doc, path: str, volume_kind: str) -> str:
    """The name of the ``volume_kind`` volume (secret, configMap) that puts a file at ``path`` in the container."""
    target = PurePosixPath(path)
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if volume_kind not in volume or target.parent != PurePosixPath(mount["mountPath"]):
            continue
        items = volume[volume_kind].get("items")
        if items is None or target.name in {item["path"] for item in items}:
            return str(volume[volume_kind].get("secretName") or volume[volume_kind].get("name"))
    raise AssertionError(f"no {volume_kind} volume mounts a file at {path}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_builds_and_validates_strictly(overlay: str) -> None:
    text = built(overlay)
    docs = documents(overlay)
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ServiceAccount", "ConfigMap",
                                         "PodDisruptionBudget", "NetworkPolicy"}
    for version in KUBERNETES_VERSIONS:
        done = subprocess.run(
            [sys.executable, "-m", "kubernetes_validate", "--strict", "--kubernetes-version", version, "-"],
            input=text, capture_output=True, text=True, timeout=180, check=False,
        )
        report = done.stdout + done.stderr
        assert done.returncode == 0, report
        # An unknown kind or apiVersion is only a warning with exit 0: it must not pass unnoticed.
        assert "WARN" not in report and "ERROR" not in report, report
        assert report.count(" passed for resource ") == len(docs), report


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_restricted_with_resources_and_probes(overlay: str) -> None:
    docs = documents(overlay)
    specs = list(pod_specs(docs))
    assert specs, "no workload in the build"
    for name, spec in specs:
        assert spec["automountServiceAccountToken"] is False, name
        # A Service named anss-gateway would otherwise inject ANSS_GATEWAY_PORT=tcp://..., the gateway's variable.
        assert spec["enableServiceLinks"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        account = spec["serviceAccountName"]
        assert one([d for d in of_kind(docs, "ServiceAccount") if d["metadata"]["name"] == account],
                   "ServiceAccount")["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["runAsNonRoot"] is True and context["runAsUser"] == GATEWAY_UID, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"] and "add" not in context["capabilities"], where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) >= {"cpu", "memory"}, f"{where} {bound}"
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            probes = {kind: container[f"{kind}Probe"]["httpGet"] for kind in PROBES}
            assert probes["startup"]["path"] == probes["liveness"]["path"] == "/healthz", where
            assert probes["readiness"]["path"] == "/readyz", where
            assert all(probe["port"] in ports for probe in probes.values()), where
            if container["args"][0] == "worker":  # its probes and metrics on --probe-port, its drain in the grace
                assert container["args"][1:] == ["--probe-port", str(ports["http"])], where
                assert spec["terminationGracePeriodSeconds"] > 120, f"{where}: longer than [batches] drain_s"
            # Writable places exist only as volumes: the state directory and /tmp.
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            writable = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]
                        if not m.get("readOnly")}
            assert set(writable) == {env["ANSS_GATEWAY_STATE_DIR"], "/tmp"}, where
            assert all("emptyDir" in v or "persistentVolumeClaim" in v for v in writable.values()), where
    for workload in of_kind(docs, "Deployment"):  # the gateway's and the workers' metrics are scraped
        template = workload["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/path"] == "/metrics"
        ports = {p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]}
        assert int(annotations["prometheus.io/port"]) in ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_is_in_the_manifests(overlay: str) -> None:
    docs = documents(overlay)
    assert not of_kind(docs, "Secret"), "Secrets are created by the operator, never shipped in deploy/"
    spec, container = gateway_container(docs)
    for var in container["env"]:
        if any(word in var["name"] for word in SECRET_LIKE) or var["name"].endswith("_KEY"):
            assert "value" not in var and "secretKeyRef" in var["valueFrom"], var
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    for key in ("SIGNING_KEY_FILE", "PSEUDONYM_KEY_FILE", "CONSOLE_SESSION_KEY_FILE"):
        assert mounted_file(spec, container, env[f"ANSS_GATEWAY_{key}"], "secret") == "anss-gateway-keys"
    for config_map in of_kind(docs, "ConfigMap"):
        for key, value in config_map.get("data", {}).items():
            assert "PRIVATE KEY" not in value, key
            assert not CREDENTIALS_IN_URL.search(value), f"{key}: a URL with credentials"
            assert "postgresql://" not in value and "postgres://" not in value, f"{key}: a DSN belongs in a Secret"


def _materialise_config(docs: list[Doc], into: Path) -> Path:
    """/app/config as the pod sees it: the projected volume's ConfigMaps written out, items where listed."""
    spec, container = gateway_container(docs)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/app/config"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    maps = {d["metadata"]["name"]: d["data"] for d in of_kind(docs, "ConfigMap")}
    for source in volume["projected"]["sources"]:
        data = maps[source["configMap"]["name"]]
        items = source["configMap"].get("items") or [{"key": key, "path": key} for key in data]
        assert {item["key"] for item in items} == set(data), "a ConfigMap key the pod never sees"
        for item in items:
            target = into / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]], encoding="utf-8")
    return into


def _pod_env(container: Doc, config_dir: Path) -> dict[str, str]:
    """The container's environment, a Secret reference standing in as ``<secret>/<key>``."""
    env = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = f"redis://secret-{ref['name']}-{ref['key']}:6379/0"
    env["ANSS_GATEWAY_CONFIG"] = str(config_dir)
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_mounted_configuration_loads(overlay: str, tmp_path: Path) -> None:
    docs = documents(overlay)
    spec, container = gateway_container(docs)
    config_dir = _materialise_config(docs, tmp_path / "config")
    assert sorted(p.name for p in (config_dir / "connectors").iterdir()) == sorted(
        p.name for p in (ROOT / "config" / "connectors").glob("*.toml")), "every connector reaches the pod"
    env = _pod_env(container, config_dir)
    if overlay == "production":
        # The DSN is read from `dsn_file`, a mounted Secret the test cannot have; checked as a path below.
        env["ANSS_GATEWAY_DATABASE_DSN"] = "postgresql://gateway@db.invalid:5432/anss"
    settings = load(env=env)
    assert settings.host == "0.0.0.0" and settings.port == 8080
    assert str(settings.state_dir) == env["ANSS_GATEWAY_STATE_DIR"]
    assert all(c.base_url.endswith(".invalid") for c in settings.connectors), "placeholders, never loopback"
    assert str(settings.signing_key_file) == env["ANSS_GATEWAY_SIGNING_KEY_FILE"]
    assert str(settings.pseudonym_key_file) == env["ANSS_GATEWAY_PSEUDONYM_KEY_FILE"]
    assert str(settings.console.session_key_file) == env["ANSS_GATEWAY_CONSOLE_SESSION_KEY_FILE"]
    if overlay == "embedded":
        assert (settings.storage_backend, settings.replay_backend, settings.rate_limit_backend) == (
            "sqlite", "sqlite", "local")
        return
    assert (settings.storage_backend, settings.replay_backend, settings.rate_limit_backend) == (
        "postgres", "redis", "redis")
    assert settings.database is not None and settings.database.schema == "anss_gateway"
    assert settings.redis_url == "redis://secret-anss-gateway-redis-url:6379/0", "the URL comes from the Secret"
    storage = tomllib.loads((config_dir / "gateway.toml").read_text(encoding="utf-8"))["storage"]
    assert mounted_file(spec, container, storage["dsn_file"], "secret") == "anss-gateway-database"
    assert settings.citizens.jwks_file is not None
    assert mounted_file(spec, container, str(settings.citizens.jwks_file), "configMap") == "anss-gateway-public-keys"
    for client in settings.clients.values():
        assert not client.dev_key and client.public_key_files, client.client_id
        for key_file in client.public_key_files:
            assert mounted_file(spec, container, str(key_file), "configMap") == "anss-gateway-public-keys"


def test_embedded_is_one_sqlite_writer_on_a_volume() -> None:
    docs = documents("embedded")
    deployment = one(docs, "Deployment")  # no worker: the embedded engine runs inside the one gateway
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "never two pods on one SQLite file"
    assert not of_kind(docs, "HorizontalPodAutoscaler")
    spec, container = gateway_container(docs)
    state = next(m for m in container["volumeMounts"] if m["mountPath"] == "/var/lib/anss-gateway")
    volume = next(v for v in spec["volumes"] if v["name"] == state["name"])
    assert set(volume) == {"name", "persistentVolumeClaim"}
    claim = one(docs, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == volume["persistentVolumeClaim"]["claimName"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_production_runs_three_replicas_or_more_on_shared_stores() -> None:
    docs = documents("production")
    deployment = globals()["deployment"](docs)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] >= 3
    autoscaler = one(docs, "HorizontalPodAutoscaler")
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                    "name": deployment["metadata"]["name"]}
    assert 3 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]
    budget = one(docs, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 2 and "maxUnavailable" not in budget["spec"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = one(docs, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    egress_ports = {(port["port"], port.get("protocol", "TCP"))
                    for policy in of_kind(docs, "NetworkPolicy")
                    if policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
                    for rule in policy["spec"].get("egress", []) for port in rule.get("ports", [])}
    assert egress_ports >= {(53, "UDP"), (53, "TCP"), (443, "TCP"), (5432, "TCP"), (6379, "TCP")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_a_command_the_gateway_has(overlay: str) -> None:
    """No placeholder workload: each container runs an existing `anss-gateway` subcommand (a batch worker
    Deployment comes with the worker command)."""
    for name, spec in pod_specs(documents(overlay)):
        for container in spec["containers"]:
            where = f"{name}/{container['name']} {container['args']}"
            assert container["command"] == ["/app/.venv/bin/anss-gateway"], where
            try:
                parsed = parser().parse_args(container["args"])
            except SystemExit:
                pytest.fail(f"{where}: not a command line anss-gateway accepts")
            assert callable(parsed.func), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_network_policy_lets_in_only_the_gateway_port(overlay: str) -> None:
    docs = documents(overlay)
    labels = deployment(docs)["spec"]["template"]["metadata"]["labels"]
    policies = [p for p in of_kind(docs, "NetworkPolicy")
                if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
    assert any(set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} for p in policies)
    ingress = [rule for p in policies for rule in p["spec"].get("ingress", [])]
    assert ingress and all(rule["ports"] == [{"port": 8080, "protocol": "TCP"}] for rule in ingress)


def test_production_runs_batch_workers_with_the_gateways_configuration_keys_and_stores() -> None:
    """`anss-gateway worker` pods: the procrastinate engine on the shared PostgreSQL (the replicas only enqueue),
    with the same configuration, keys, DSN and Redis as the gateway, spread over nodes, covered by its network
    policies."""
    docs = documents("production")
    workers = deployment(docs, "worker")
    assert workers["spec"]["replicas"] >= 2
    spec = workers["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"][0] == "worker"
    gateway_spec, gateway = gateway_container(docs)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    for mount in gateway["volumeMounts"]:
        assert mount["mountPath"] in mounts, f"the worker lacks {mount['mountPath']}"
        mine = next(v for v in spec["volumes"] if v["name"] == mounts[mount["mountPath"]])
        theirs = next(v for v in gateway_spec["volumes"] if v["name"] == mount["name"])
        assert mine == {**theirs, "name": mine["name"]}, f"{mount['mountPath']}: not the gateway's volume"
    same = {"ANSS_GATEWAY_PORT"}  # the worker's port is its --probe-port
    def by_name(env: list[Doc]) -> dict[str, Doc]:
        return {e["name"]: e for e in env if e["name"] not in same}
    assert by_name(gateway["env"]) == by_name(container["env"]), "the worker's environment is the gateway's"
    labels = workers["spec"]["template"]["metadata"]["labels"]
    assert any(p["spec"]["podSelector"]["matchLabels"].items() <= labels.items() for p in of_kind(docs, "NetworkPolicy")
               if "Egress" in p["spec"]["policyTypes"]), "the stores and administrations policy covers workers"
    assert not any(s["spec"]["selector"].items() <= labels.items() for s in of_kind(docs, "Service")), "no API"
    batches = _toml(DEPLOY / "overlays" / "production" / "gateway.toml")["batches"]
    assert batches["engine"] in ("auto", "procrastinate") and batches["serve_works"] is False


def test_the_base_config_is_the_repository_config() -> None:
    """Kustomize reads nothing outside deploy/base, so config/ is copied there: the copy must follow it."""
    shipped = {p.relative_to(ROOT / "config") for p in (ROOT / "config").rglob("*") if p.is_file()}
    copied = {p.relative_to(DEPLOY / "base" / "config") for p in (DEPLOY / "base" / "config").rglob("*")
              if p.is_file()}
    assert copied == shipped, "copy config/ to deploy/base/config/ (and list new files in its kustomization.yaml)"
    for relative in shipped:
        assert (DEPLOY / "base" / "config" / relative).read_bytes() == (ROOT / "config" / relative).read_bytes(), (
            f"deploy/base/config/{relative} differs from config/{relative}: copy it again")


def _toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_production_files_differ_from_config_only_where_they_must() -> None:
    production = DEPLOY / "overlays" / "production"
    gateway, shipped = _toml(production / "gateway.toml"), _toml(ROOT / "config" / "gateway.toml")
    changed = {("storage", "backend"), ("storage", "dsn_file"), ("storage", "schema"), ("replay", "backend"),
               ("rate_limits", "backend"), ("citizens", "jwks_file"), ("batches", "serve_works")}
    for table, key in changed:
        gateway[table].pop(key, None)
        shipped[table].pop(key, None)
    assert gateway == shipped, "deploy/overlays/production/gateway.toml must follow config/gateway.toml"
    clients, shipped_clients = _toml(production / "clients.toml"), _toml(ROOT / "config" / "clients.toml")
    assert clients["clients"].keys() == shipped_clients["clients"].keys()
    for client_id, table in clients["clients"].items():
        assert table.pop("public_key_files") == [f"/etc/anss-gateway/public-keys/{client_id}.pem"]
        expected = dict(shipped_clients["clients"][client_id])
        del expected["public_key_files"], expected["dev_key"]
        assert table == expected, f"{client_id}: rights as in config/clients.toml"


def test_without_kubectl_the_build_is_skipped_except_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.find_kubectl", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="kubectl is not installed"):
        kubectl_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must build and validate deploy/"):
        kubectl_or_skip()


@pytest.mark.parametrize("overlay", ["embedded", "production"])
def test_every_pod_sees_the_whole_repository_config(overlay: str) -> None:
    """What each Deployment mounts at /app/config is config/, file for file (the rule parameters under rules/
    included: without them the gateway does not start), byte for byte."""
    docs = documents(overlay)
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in of_kind(docs, "ConfigMap")}
    shipped = {p.relative_to(ROOT / "config").as_posix(): p.read_text(encoding="utf-8")
               for p in (ROOT / "config").rglob("*") if p.is_file()}
    for replaced in (DEPLOY / "overlays" / overlay).glob("*.toml"):  # an overlay's own gateway.toml, clients.toml
        shipped[replaced.name] = replaced.read_text(encoding="utf-8")
    for deployment in of_kind(docs, "Deployment"):
        [volume] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
        seen: dict[str, str] = {}
        for source in volume["projected"]["sources"]:
            data = maps[source["configMap"]["name"]]
            items = source["configMap"].get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                assert item["path"] not in seen, f"{item['path']} is projected twice"
                seen[item["path"]] = data[item["key"]]
        assert seen == shipped, f"{deployment['metadata']['name']}: /app/config is not config/"


def test_the_image_installs_as_the_makefile_does() -> None:
    """The project's rule: what the image runs is what `make test` tested — the same pip commands in .venv."""
    def installs(text: str) -> list[str]:
        found = re.findall(r"python -m pip install [^\n&\\]+", text)
        return [" ".join(line.split()) for line in found]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8").replace("$(BIN)/", ".venv/bin/")
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert installs(makefile) and installs(dockerfile) == installs(makefile)
    assert "python -m venv .venv" in dockerfile


def test_the_images_user_and_group_are_the_ones_the_pods_run_as() -> None:
    """deploy.md section 6: the image's user *and group* are 10001, as the pods' runAsUser/runAsGroup/fsGroup
    (a system group would otherwise take the next free system gid)."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(rf"groupadd [^\n]*--gid {GATEWAY_UID} gateway", dockerfile)
    assert re.search(rf"useradd [^\n]*--uid {GATEWAY_UID} --gid {GATEWAY_UID} gateway", dockerfile)


def test_the_overlay_of_deploy_md_section_3_with_its_patches_builds_as_it_says(tmp_path: Path) -> None:
    """deploy.md's own overlay, with the two patches it prints (administrations.yaml, egress.yaml), taken from
    the page: both Deployments reach the real administration, and the NetworkPolicy keeps its DNS rule."""
    kubectl = kubectl_or_skip()
    page = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", page, re.S)
    overlay = next(b for b in blocks if b.startswith("# my-deployment/kustomization.yaml"))
    mine = tmp_path / "my-deployment"
    mine.mkdir()
    for name in ("administrations.yaml", "egress.yaml"):
        block = next(b for b in blocks if b.lstrip(" ").startswith(f"# {name}"))
        (mine / name).write_text("\n".join(line[2:] if line.startswith("  ") else line
                                           for line in block.splitlines()) + "\n", encoding="utf-8")
    shutil.copytree(DEPLOY, tmp_path / "deploy")  # beside it, as the page lays them out (Kustomize takes no
    (mine / "kustomization.yaml").write_text(overlay, encoding="utf-8")  # absolute path)
    done = subprocess.run([kubectl, "kustomize", str(mine)], capture_output=True, text=True, timeout=180,
                          check=False)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    for component in ("gateway", "worker"):
        env = {e["name"]: e.get("value") for c in deployment(docs, component)["spec"]["template"]["spec"]["containers"]
               for e in c.get("env", [])}
        assert env["ANSS_GATEWAY_CONNECTOR_CIVIL_REGISTRY_URL"] == "https://civil-registry.example.org", component
    policy = next(d for d in of_kind(docs, "NetworkPolicy") if d["metadata"]["name"] == "anss-gateway")
    ports = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    assert {(53, "UDP"), (53, "TCP"), (443, "TCP")} <= ports
