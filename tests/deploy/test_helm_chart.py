"""The Helm chart (deploy/helm/tracardi) rendered by a real helm binary: the values reach the
Deployments, the mapping to the worker settings is queueing/helm.py's, and every manifest
passes lint and the Kubernetes schemas (devtools/helm.sh check).

helm comes from $HELM (devtools/test.sh builds it with devtools/helm.sh and exports it) or the
cached var/tools/bin/helm. Without one they fail when $HELM is set (devtools/test.sh sets it even
when the build failed) or under REQUIRE_REAL_ENGINES=1 (CI); run alone, with neither, they skip."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from queueing.helm import HELM_VALUES, helm_name, helm_values
from queueing.management.commands.apply_helm_values import flatten
from queueing.models import WorkerSettings, WorkerType

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "tracardi"
SCALED = CHART / "ci" / "scaled-values.yaml"
WORKER_TYPES = list(WorkerType.values)


def helm_binary() -> str:
    path = os.environ.get("HELM") or str(ROOT / "var" / "tools" / "bin" / "helm")
    if os.access(path, os.X_OK):
        return path
    reason = f"no helm binary at {path}: devtools/helm.sh build makes one (devtools/test.sh does)"
    if os.environ.get("HELM") or os.environ.get("REQUIRE_REAL_ENGINES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def render(*args: str) -> list[dict]:
    out = subprocess.run(
        [helm_binary(), "template", "tracardi", str(CHART), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind_and_component(docs: list[dict], kind: str) -> dict[str, dict]:
    return {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc
        for doc in docs
        if doc["kind"] == kind and "app.kubernetes.io/component" in doc["metadata"].get("labels", {})
    }


def env_of(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env") or []}


def load_values(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def merged_worker_values(*paths: Path) -> dict:
    """worker.<type> of values.yaml overlaid with the given files (the keys helm merges here)."""
    workers = load_values(CHART / "values.yaml")["worker"]
    for path in paths:
        for worker_type, values in (load_values(path).get("worker") or {}).items():
            workers[worker_type] = values
    return workers


def test_values_yaml_worker_keys_are_the_mappings_keys() -> None:
    """The mapping is shared: values.yaml's worker.<type> keys are exactly those that
    queueing/helm.py's helm_values() produces (what the console's Helm values view shows)."""
    workers = load_values(CHART / "values.yaml")["worker"]
    for worker_type in WORKER_TYPES:
        chart_keys = set(flatten({"worker": {worker_type: workers[worker_type]}}))
        mapping_keys = set(helm_values([WorkerSettings(worker_type=worker_type)]))
        assert chart_keys == mapping_keys == {helm_name(worker_type, value) for value in HELM_VALUES}
    scaled = load_values(SCALED)["worker"]
    for worker_type in WORKER_TYPES:
        assert set(flatten({"worker": {worker_type: scaled[worker_type]}})) == mapping_keys_for(worker_type)


def mapping_keys_for(worker_type: str) -> set[str]:
    return {helm_name(worker_type, value) for value in HELM_VALUES}


@pytest.mark.parametrize("values_files", [(), (SCALED,)], ids=["default", "scaled"])
def test_deployments_carry_the_values(values_files: tuple[Path, ...]) -> None:
    args = [arg for path in values_files for arg in ("-f", str(path))]
    docs = render(*args)
    deployments = by_kind_and_component(docs, "Deployment")
    workers = merged_worker_values(*values_files)
    for worker_type in WORKER_TYPES:
        values = workers[worker_type]
        deployment = deployments.get(f"worker-{worker_type}")
        if not values["enabled"]:
            assert deployment is None, f"worker.{worker_type} is disabled but has a Deployment"
            continue
        assert deployment is not None, f"worker.{worker_type} is enabled but has no Deployment"
        assert deployment["spec"]["replicas"] == values["replicas"]
        annotations = deployment["metadata"]["annotations"]
        assert annotations["tracardi.io/logging-level"] == values["config"]["loggingLevel"]
        assert json.loads(annotations["tracardi.io/helm-values"]) == {"worker": {worker_type: values}}
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["worker", worker_type]
    outbox = workers["outbox"]
    assert deployments["outbox"]["spec"]["replicas"] == outbox["replicas"]
    outbox_container = deployments["outbox"]["spec"]["template"]["spec"]["containers"][0]
    assert outbox_container["args"] == ["outbox"]
    assert env_of(outbox_container)["OUTBOX_WORKERS"] == str(outbox["workers"])

    api_replicas = 3 if values_files else 1
    api = deployments["api"]
    assert api["spec"]["replicas"] == api_replicas
    api_container = api["spec"]["template"]["spec"]["containers"][0]
    assert api_container["args"] == ["api"]
    assert api_container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api_container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for deployment in deployments.values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert container["envFrom"] == [{"secretRef": {"name": "tracardi-env"}}]


def test_background_workers_are_replaced_all_at_once_and_the_others_roll() -> None:
    # Only the background worker writes the windows of applied ids (README, Helm chart).
    strategies = {
        component: deployment["spec"].get("strategy", {}).get("type", "RollingUpdate")
        for component, deployment in by_kind_and_component(
            render("--set", "worker.collector.enabled=true"), "Deployment"
        ).items()
    }
    assert strategies.pop("worker-background") == "Recreate"
    assert set(strategies.values()) == {"RollingUpdate"} and "worker-collector" in strategies


def test_collector_is_off_by_default_and_a_disabled_worker_has_no_deployment() -> None:
    components = set(by_kind_and_component(render(), "Deployment"))
    assert components == {"api", "worker-background", "worker-workflow", "outbox"}
    components = set(
        by_kind_and_component(
            render("--set", "worker.background.enabled=false", "--set", "worker.outbox.enabled=false"), "Deployment"
        )
    )
    assert components == {"api", "worker-workflow"}


def test_migration_hook_and_secret() -> None:
    docs = render()
    job = by_kind_and_component(docs, "Job")["migrate"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["migrate"]
    secret = next(doc for doc in docs if doc["kind"] == "Secret")
    assert secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0  # before the Job
    for key in ("DATABASE_URL", "QUEUE_BACKEND", "PULSAR_SERVICE_URL", "PULSAR_ADMIN_URL", "STORE_BACKEND"):
        assert key in secret["data"]
    assert "ELASTICSEARCH_URL" in secret["data"] and secret["data"]["SECRET_KEY"]

    docs = render("--set", "secret.existingSecret=prod-tracardi")
    assert not [doc for doc in docs if doc["kind"] == "Secret"]
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job"}:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                assert container["envFrom"] == [{"secretRef": {"name": "prod-tracardi"}}]


@pytest.mark.django_db
def test_the_hooks_values_become_the_worker_settings_the_console_shows() -> None:
    """The Job's TRACARDI_HELM_VALUES through apply_helm_values give worker settings rows whose
    Helm values (queueing.helm.helm_values, the console's view) are the chart's values."""
    job = by_kind_and_component(render("-f", str(SCALED)), "Job")["migrate"]
    values_json = env_of(job["spec"]["template"]["spec"]["containers"][0])["TRACARDI_HELM_VALUES"]
    call_command("apply_helm_values", json=values_json)
    workers = merged_worker_values(SCALED)
    expected = flatten({"worker": {t: workers[t] for t in WORKER_TYPES}})
    assert helm_values(WorkerSettings.objects.all()) == expected
    assert WorkerSettings.objects.get(pk="background").logging_level == "WARNING"


def test_lint_template_and_kubernetes_schemas() -> None:
    """devtools/helm.sh check: helm lint --strict, helm template (default and scaled values)
    and kubernetes-validate --strict on every rendered manifest."""
    env = {**os.environ, "HELM": helm_binary()}
    result = subprocess.run(
        [str(ROOT / "devtools" / "helm.sh"), "check"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "chart OK" in result.stdout


@pytest.mark.django_db
def test_values_the_admin_would_refuse_fail_the_hook() -> None:
    """A value out of range fails apply_helm_values (so the migration hook, so the upgrade),
    naming the worker type, and nothing is written."""
    bad = {"worker": {"background": {"replicas": 2}, "workflow": {"config": {"bulker": {"maxBatchSize": 10**6}}}}}
    before = helm_values(WorkerSettings.objects.all())
    with pytest.raises(CommandError, match=r"worker\.workflow: .*max_batch_size"):
        call_command("apply_helm_values", json=json.dumps(bad))
    assert helm_values(WorkerSettings.objects.all()) == before


def schema_leaves(schema: dict, prefix: str) -> dict[str, dict]:
    if schema.get("type") != "object":
        return {prefix: schema}
    leaves: dict[str, dict] = {}
    for key, sub in schema["properties"].items():
        leaves.update(schema_leaves(sub, f"{prefix}.{key}"))
    return leaves


def test_values_schema_follows_the_mapping_and_the_admins_limits() -> None:
    """values.schema.json (helm refuses bad values before the hook runs) has, for each worker
    type, the mapping's names, the logging levels and the WorkerSettings validators' limits."""
    from django.core.validators import MaxValueValidator, MinValueValidator

    from queueing.models import LoggingLevel

    schema = json.loads((CHART / "values.schema.json").read_text())
    for worker_type in WORKER_TYPES:
        leaves = schema_leaves(schema["properties"]["worker"]["properties"][worker_type], f"worker.{worker_type}")
        assert set(leaves) == mapping_keys_for(worker_type)
        for value in HELM_VALUES:
            leaf = leaves[helm_name(worker_type, value)]
            field = WorkerSettings._meta.get_field(value.field)
            if value.field == "logging_level":
                assert leaf["enum"] == list(LoggingLevel.values)
                continue
            for validator in field.validators:
                if isinstance(validator, MinValueValidator):
                    assert leaf["minimum"] == validator.limit_value, value.field
                if isinstance(validator, MaxValueValidator):
                    assert leaf["maximum"] == validator.limit_value, value.field
