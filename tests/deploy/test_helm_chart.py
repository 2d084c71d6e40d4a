"""The Helm chart of cluster mode (deploy/helm/odradek), rendered and checked offline.

Goal: what the chart renders is valid Kubernetes, runs agents the way cluster mode needs
(a Deployment of stateless agents with an autoscaler and a disruption budget, probes on
the metrics endpoint, a grace period that covers the drain, non-root with a read-only
root filesystem and an emptyDir cache), and starts each agent with settings that
``odradek serve`` reads and accepts: every ODRADEK_* name the chart sets is in serve's
``_ENVIRONMENT`` table, and the values, once the downward API has filled in the pod's
name and IP, pass serve's own ``settings_from``. Bad values are refused with a message
that says what to set.

Method: Helm 4's engine (helm-python-sdk) renders the chart with its default values
(plus the one required setting, store.url) and with variations (external etcd, an
existing Secret, credentials created from values, autoscaling off, Kafka and registry
doors off, several cells with and without their Kafka doors, a secured etcd: TLS files
from a Secret and a user whose password comes from a Secret); kubernetes-validate
checks every object against the Kubernetes OpenAPI schemas, strictly (unknown fields
refused), of the oldest version the chart supports (its kubeVersion) and of the newest
the validator ships. Offline: the etcd dependency
(Bitnami's chart) is not fetched, so its own objects are absent; with etcd.enabled the
agents' endpoints name its members, which is what is checked.
"""

from __future__ import annotations

import copy
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers beside this file, by name

from chart_rendering import CHART, CONTAINERFILE, NAMESPACE, RELEASE, Rendered, render_cases

pytest.importorskip("helm_python", reason="install odradek[deploy] (./dev setup)")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="install odradek[deploy]")
yaml = pytest.importorskip("yaml", reason="install odradek[deploy]")

from odradek import limits  # noqa: E402
from odradek.cli.main import build_parser  # noqa: E402
from odradek.cli.serve import _ENVIRONMENT, settings_from, split_address  # noqa: E402
from odradek.cluster.etcd import endpoints_tls, parse_endpoints  # noqa: E402

STORE = {"url": "s3://events/odradek"}
CASES: dict[str, dict[str, Any]] = {
    # The chart's defaults with the one setting that has none.
    "defaults": {"store": STORE},
    "external-etcd": {
        "store": STORE,
        "etcd": {"enabled": False, "endpoints": ["http://etcd-a:2379", "http://etcd-b:2379"]},
    },
    "existing-secret": {"store": {**STORE, "credentials": {"existingSecret": "odradek-s3"}}},
    "cells": {
        "store": STORE,
        "cluster": {"cells": 3},
        "kafka": {"enabled": False},
        "registry": {"enabled": False},
    },
    # Several cells with their Kafka doors (decision 0033): ports.kafka plus each index.
    "cells-kafka": {"store": STORE, "cluster": {"cells": 3}, "registry": {"enabled": False}},
    # Several cells with every door on (decision 0034: every agent's registry door).
    "cells-registry": {"store": STORE, "cluster": {"cells": 3}},
    # The last cell's door on the highest port there is.
    "cells-kafka-top-port": {
        "store": STORE,
        "cluster": {"cells": 3},
        "registry": {"enabled": False},
        "ports": {"kafka": 65533},
    },
    "created-secret": {
        "store": {
            "url": "s3://events/odradek",
            "options": {"endpoint": "http://minio.storage:9000", "allow_http": True, "region": "eu-1"},
            "credentials": {"env": {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"}},
            "flushMs": 5,
        },
    },
    "hpa-off": {"store": STORE, "autoscaling": {"enabled": False}, "replicaCount": 3},
    "doors-off": {"store": STORE, "kafka": {"enabled": False}, "registry": {"enabled": False}},
    "pdb-min-available": {"store": STORE, "podDisruptionBudget": {"minAvailable": 1}},
    # An etcd of one's own over mutual TLS and with a user (docs/kubernetes.md).
    "secured-etcd": {
        "store": STORE,
        "etcd": {"enabled": False, "endpoints": ["https://etcd-a:2379", "https://etcd-b:2379"]},
        "etcdClient": {
            "tls": {
                "enabled": True,
                "existingSecret": "etcd-client-tls",
                "certKey": "tls.crt",
                "keyKey": "tls.key",
            },
            "auth": {"user": "odradek", "existingSecret": "etcd-odradek", "passwordKey": "password"},
        },
    },
    # The deployed etcd over TLS, its CA only (no client certificate).
    "deployed-etcd-tls": {
        "store": STORE,
        "etcdClient": {"tls": {"enabled": True, "existingSecret": "etcd-ca", "caKey": "ca.pem"}},
    },
}
VALID = list(CASES)

# Values the chart refuses, and a fragment of what it says.
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "no-store": ({}, "store.url is required"),
    "cells-kafka-ports-over-registry": (
        {"store": STORE, "cluster": {"cells": 3}, "ports": {"kafka": 8079}},
        "ports.registry 8081 is one of the Kafka doors' ports with cluster.cells 3 "
        "(ports.kafka 8079 to 8081)",
    ),
    "cells-kafka-ports-past-65535": (
        {"store": STORE, "cluster": {"cells": 3}, "registry": {"enabled": False}, "ports": {"kafka": 65534}},
        "ports.kafka 65534 with cluster.cells 3: each cell's Kafka door listens on ports.kafka plus the "
        "cell's index, up to 65536, above 65535",
    ),
    "cells-kafka-ports-over-flight": (
        {
            "store": STORE,
            "cluster": {"cells": 3},
            "registry": {"enabled": False},
            "ports": {"kafka": 8814, "flight": 8815},
        },
        "ports.flight 8815 is one of the Kafka doors' ports with cluster.cells 3 (ports.kafka 8814 to 8816)",
    ),
    "too-many-cells": (
        {
            "store": STORE,
            "cluster": {"cells": 65},
            "kafka": {"enabled": False},
            "registry": {"enabled": False},
        },
        "cells",
    ),
    "local-store": ({"store": {"url": "file:///srv/odradek"}}, "file:// and memory:// are one machine's"),
    "external-etcd-without-endpoints": (
        {"store": STORE, "etcd": {"enabled": False}},
        "etcd.endpoints is empty",
    ),
    "endpoints-with-deployed-etcd": (
        {"store": STORE, "etcd": {"endpoints": ["http://etcd:2379"]}},
        "set etcd.enabled=false",
    ),
    "https-endpoint-without-tls": (
        {"store": STORE, "etcd": {"enabled": False, "endpoints": ["https://etcd:2379"]}},
        "set etcdClient.tls.enabled=true",
    ),
    "http-endpoint-with-tls": (
        {
            "store": STORE,
            "etcd": {"enabled": False, "endpoints": ["http://etcd:2379"]},
            "etcdClient": {"tls": {"enabled": True}},
        },
        "is http:// but etcdClient.tls.enabled is true",
    ),
    "other-scheme-endpoint": (
        {"store": STORE, "etcd": {"enabled": False, "endpoints": ["ftp://etcd:2379"]}},
        "does not match pattern '^https?://'",
    ),
    "tls-secret-without-tls": (
        {"store": STORE, "etcdClient": {"tls": {"existingSecret": "etcd-tls"}}},
        "etcdClient.tls.existingSecret is for TLS",
    ),
    "client-cert-without-key": (
        {
            "store": STORE,
            "etcdClient": {"tls": {"enabled": True, "existingSecret": "t", "certKey": "tls.crt"}},
        },
        "certKey and etcdClient.tls.keyKey go together",
    ),
    "etcd-user-without-secret": (
        {"store": STORE, "etcdClient": {"auth": {"user": "odradek"}}},
        "etcdClient.auth.user needs etcdClient.auth.existingSecret",
    ),
    "etcd-password-without-user": (
        {"store": STORE, "etcdClient": {"auth": {"existingSecret": "etcd-odradek"}}},
        "etcdClient.auth.existingSecret needs etcdClient.auth.user",
    ),
    "bad-cluster-name": ({"store": STORE, "cluster": {"name": "a/b"}}, "/cluster/name"),
    "lease-too-long": ({"store": STORE, "cluster": {"leaseTtlSeconds": 61}}, "/cluster/leaseTtlSeconds"),
    "comma-in-option": (
        {"store": {**STORE, "options": {"endpoint": "http://a,b"}}},
        "store.options.endpoint: neither the name nor the value may hold ','",
    ),
    "credential-not-a-variable": (
        {"store": {**STORE, "credentials": {"env": {"AWS-KEY": "x"}}}},
        '"AWS-KEY" is not an environment variable name',
    ),
    "misspelled-value": ({"store": STORE, "autoscaling": {"enable": False}}, "'enable' not allowed"),
    "min-above-max": (
        {"store": STORE, "autoscaling": {"minReplicas": 4, "maxReplicas": 2}},
        "maxReplicas must be at least",
    ),
}

# An example pod, for the downward API's fields (and a Secret's value, for secretKeyRef).
POD_NAME = f"{RELEASE}-odradek-7c9f8d6b5-x2x7q"
POD_IP = "10.12.3.4"
FIELDS = {"metadata.name": POD_NAME, "status.podIP": POD_IP}
SECRET_VALUE = "value-from-a-secret"
# Besides the drain of in-flight calls (limits.shutdown_drain_seconds_max), a SIGTERMed
# owner commits its journal, writes a checkpoint to the store and deletes its owner key:
# a few store round trips, given generously here.
HANDOVER_SECONDS = 30


@pytest.fixture(scope="module")
def rendered() -> dict[str, Rendered | str]:
    return render_cases({**CASES, **{name: values for name, (values, _) in REFUSED.items()}})


def chart(rendered: dict[str, Rendered | str], case: str) -> Rendered:
    result = rendered[case]
    assert isinstance(result, Rendered), f"{case} did not render: {result}"
    return result


def kubernetes_versions() -> list[str]:
    """The oldest version the chart supports (its kubeVersion) and the newest known."""
    document = yaml.safe_load((CHART / "Chart.yaml").read_text())
    match = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)(-0)?", document["kubeVersion"])
    assert match, f"kubeVersion {document['kubeVersion']!r} is not '>=X.Y.Z-0'"
    return [match.group(1), kubernetes_validate.latest_version()]


def serve_environment(rendered: Rendered) -> dict[str, str]:
    """The agent's environment as the kubelet builds it for the example pod: downward-API
    fields filled in, ``$(NAME)`` references to earlier variables expanded."""
    environment: dict[str, str] = {}
    for name, variable in rendered.env().items():
        if "value" in variable:
            value = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda match: environment.get(match.group(1), match.group(0)),
                variable["value"],
            )
        elif "secretKeyRef" in variable["valueFrom"]:
            value = SECRET_VALUE
        else:
            value = FIELDS[variable["valueFrom"]["fieldRef"]["fieldPath"]]
        environment[name] = value
    return environment


def selected(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# -- valid Kubernetes ------------------------------------------------------------------------


@pytest.mark.parametrize("case", VALID)
def test_every_object_is_valid_kubernetes(rendered: dict[str, Rendered | str], case: str) -> None:
    objects = chart(rendered, case).objects
    assert objects
    for version in kubernetes_versions():
        for item in objects:
            kubernetes_validate.validate(item, version, strict=True)
            assert item["metadata"]["namespace"] == NAMESPACE


def test_the_validator_refuses_a_misspelled_field(rendered: dict[str, Rendered | str]) -> None:
    deployment = copy.deepcopy(chart(rendered, "defaults").one("Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbes"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProbes"):
        kubernetes_validate.validate(deployment, kubernetes_versions()[-1], strict=True)


def test_the_chart_lints_clean(tmp_path: Path) -> None:
    """``helm lint --strict`` finds nothing (on a copy without the dependency, which lint
    would otherwise report as not fetched)."""
    helm = pytest.importorskip("helm_python")
    copy_of_chart = tmp_path / "odradek"
    shutil.copytree(CHART, copy_of_chart)
    metadata = yaml.safe_load((copy_of_chart / "Chart.yaml").read_text())
    assert [dependency["name"] for dependency in metadata.pop("dependencies")] == ["etcd"]
    (copy_of_chart / "Chart.yaml").write_text(yaml.safe_dump(metadata))
    report = helm.lint(str(copy_of_chart), {"store": STORE}, strict=True)
    findings = [message for message in report["messages"] if message["severity"] >= 2]
    assert findings == [] and report["errors"] == []


# -- the shape cluster mode needs ------------------------------------------------------------


@pytest.mark.parametrize("case", VALID)
def test_agents_are_a_deployment_and_every_part_selects_them(
    rendered: dict[str, Rendered | str], case: str
) -> None:
    result = chart(rendered, case)
    assert "StatefulSet" not in result.kinds()  # agents are stateless
    deployment = result.one("Deployment")
    pod = deployment["spec"]["template"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selected(selector, pod["metadata"]["labels"])
    container_ports = {port["name"]: port["containerPort"] for port in result.agent()["ports"]}
    for service in result.all("Service"):
        assert selected(service["spec"]["selector"], pod["metadata"]["labels"])
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports, port
            assert port["port"] == container_ports[port["targetPort"]]
    for budget in result.all("PodDisruptionBudget"):
        assert selected(budget["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    for autoscaler in result.all("HorizontalPodAutoscaler"):
        target = autoscaler["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    account = pod["spec"]["serviceAccountName"]
    assert [item["metadata"]["name"] for item in result.all("ServiceAccount")] == [account]


def test_defaults_scale_with_an_autoscaler_and_a_disruption_budget(
    rendered: dict[str, Rendered | str],
) -> None:
    result = chart(rendered, "defaults")
    autoscaler = result.one("HorizontalPodAutoscaler")
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert 2 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]
    assert "replicas" not in result.one("Deployment")["spec"]  # the autoscaler owns the count
    budget = result.one("PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1 and "minAvailable" not in budget
    # A rolling update starts the new agent before it stops an old one.
    assert result.one("Deployment")["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": 1,
        "maxUnavailable": 0,
    }
    assert result.one("Service", f"{RELEASE}-odradek")["spec"]["type"] == "ClusterIP"
    assert result.one("Service", f"{RELEASE}-odradek-agents")["spec"]["clusterIP"] == "None"
    assert f"{RELEASE}-odradek" in result.notes and "cluster status" in result.notes


def test_autoscaling_off_sets_the_replica_count(rendered: dict[str, Rendered | str]) -> None:
    result = chart(rendered, "hpa-off")
    assert result.all("HorizontalPodAutoscaler") == []
    assert result.one("Deployment")["spec"]["replicas"] == 3


def test_a_disruption_budget_by_minimum_available(rendered: dict[str, Rendered | str]) -> None:
    assert chart(rendered, "pdb-min-available").one("PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_probes_ask_the_metrics_endpoint(rendered: dict[str, Rendered | str]) -> None:
    result = chart(rendered, "defaults")
    agent = result.agent()
    metrics_port = {port["name"]: port["containerPort"] for port in agent["ports"]}["metrics"]
    assert result.env()["ODRADEK_METRICS_LISTEN"]["value"] == f"0.0.0.0:{metrics_port}"
    paths = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in paths.items():
        get = agent[probe]["httpGet"]
        assert get["port"] == "metrics" and get["path"] == path, probe
    startup = agent["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # a slow start is no crash


def test_the_probe_paths_answer_on_a_real_metrics_endpoint(rendered: dict[str, Rendered | str]) -> None:
    """The paths the probes ask answer on the server's metrics endpoint: liveness 200
    whatever the data; readiness 200 once the data is served (for a cluster agent: once
    it joined with a live lease, tests/cluster/test_agents.py), 503 before."""
    from odradek.node import Node
    from odradek.protocols.metrics import Metrics

    agent = chart(rendered, "defaults").agent()
    live, ready = agent["livenessProbe"]["httpGet"]["path"], agent["readinessProbe"]["httpGet"]["path"]
    with tempfile.TemporaryDirectory() as directory:
        node = Node.open(directory, fsync=False)
        metrics = Metrics(None)
        listener = metrics.serve("127.0.0.1", 0)
        base = f"http://127.0.0.1:{listener.port}"
        try:
            with urllib.request.urlopen(base + live, timeout=30) as answer:
                assert answer.status == 200
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + ready, timeout=30)
            assert refused.value.code == 503
            refused.value.close()
            metrics.attach(node)
            with urllib.request.urlopen(base + ready, timeout=30) as answer:
                assert answer.status == 200
        finally:
            listener.close()
            node.close()


def test_the_grace_period_covers_the_drain(rendered: dict[str, Rendered | str]) -> None:
    pod = chart(rendered, "defaults").one("Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= limits.shutdown_drain_seconds_max + HANDOVER_SECONDS


def test_agents_run_unprivileged_on_a_read_only_root(rendered: dict[str, Rendered | str]) -> None:
    result = chart(rendered, "defaults")
    pod = result.one("Deployment")["spec"]["template"]["spec"]
    agent = result.agent()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    context = agent["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    # The image's user is the pod's (deploy/container/Containerfile).
    users = re.findall(r"^USER\s+(\d+)", CONTAINERFILE.read_text(), re.MULTILINE)
    assert users and int(users[-1].split(":")[0]) == pod["securityContext"]["runAsUser"]
    # Every writable path is an emptyDir: the cache at the data directory, and /tmp.
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in agent["volumeMounts"]}
    assert set(mounts) == {result.env()["ODRADEK_DATA_DIR"]["value"], "/tmp"}
    for name in mounts.values():
        assert "emptyDir" in volumes[name]
    assert volumes[mounts["/data"]]["emptyDir"]["sizeLimit"]


# -- what serve reads ------------------------------------------------------------------------


@pytest.mark.parametrize("case", VALID)
def test_every_odradek_variable_is_one_serve_reads(rendered: dict[str, Rendered | str], case: str) -> None:
    names = {name for name in chart(rendered, case).env() if name.startswith("ODRADEK_")}
    assert names <= set(_ENVIRONMENT.values()), names - set(_ENVIRONMENT.values())
    # What makes a pod a cluster agent, each under the name serve reads.
    assert {
        _ENVIRONMENT[field] for field in ("etcd", "cluster", "agent_id", "advertise", "lease_ttl")
    } <= names
    assert {_ENVIRONMENT[field] for field in ("store", "data_dir", "listen", "metrics_listen")} <= names


@pytest.mark.parametrize("case", VALID)
def test_serve_accepts_the_rendered_settings(rendered: dict[str, Rendered | str], case: str) -> None:
    result = chart(rendered, case)
    environment = serve_environment(result)
    settings = settings_from(build_parser().parse_args(["serve"]), environment)
    ports = {port["name"]: port["containerPort"] for port in result.agent()["ports"]}
    assert settings.agent_id == POD_NAME
    assert settings.advertise == f"{POD_IP}:{ports['flight']}"
    assert settings.listen == f"0.0.0.0:{ports['flight']}"
    assert settings.metrics_listen == f"0.0.0.0:{ports['metrics']}"
    assert settings.data_dir == "/data"
    assert settings.cluster == f"{RELEASE}-odradek"
    assert settings.lease_ttl == limits.cluster_lease_ttl_seconds_default
    assert settings.store == "s3://events/odradek"
    assert settings.etcd is not None
    if "kafka" in ports:
        assert settings.kafka_listen == f"0.0.0.0:{ports['kafka']}"
        assert settings.kafka_advertised == f"{POD_IP}:{ports['kafka']}"
    else:
        assert settings.kafka_listen is None
    if "registry" in ports:
        assert settings.registry_listen == f"0.0.0.0:{ports['registry']}"
    else:
        assert settings.registry_listen is None


def test_deployed_etcd_is_reached_at_each_member(rendered: dict[str, Rendered | str]) -> None:
    environment = serve_environment(chart(rendered, "defaults"))
    members = [
        f"{RELEASE}-etcd-{index}.{RELEASE}-etcd-headless.{NAMESPACE}.svc.cluster.local" for index in range(3)
    ]
    assert parse_endpoints(environment["ODRADEK_ETCD"]) == [(member, 2379) for member in members]


def test_external_etcd_is_reached_at_the_given_members(rendered: dict[str, Rendered | str]) -> None:
    environment = serve_environment(chart(rendered, "external-etcd"))
    assert parse_endpoints(environment["ODRADEK_ETCD"]) == [("etcd-a", 2379), ("etcd-b", 2379)]


# -- a secured etcd --------------------------------------------------------------------------


def _etcd_tls_volume(result: Rendered) -> tuple[dict[str, Any], str]:
    """The etcd TLS Secret's volume and where the agent mounts it (read-only)."""
    pod = result.one("Deployment")["spec"]["template"]["spec"]
    volume = {volume["name"]: volume for volume in pod["volumes"]}["etcd-tls"]
    mounts = {mount["name"]: mount for mount in result.agent()["volumeMounts"]}
    assert mounts["etcd-tls"]["readOnly"] is True
    return volume, mounts["etcd-tls"]["mountPath"]


def test_a_secured_etcd_is_reached_with_files_and_a_password_from_secrets(
    rendered: dict[str, Rendered | str],
) -> None:
    result = chart(rendered, "secured-etcd")
    variables = result.env()
    volume, directory = _etcd_tls_volume(result)
    assert volume["secret"]["secretName"] == "etcd-client-tls"
    assert volume["secret"]["defaultMode"] == 0o440  # the pod's group (fsGroup) reads them
    files = {item["path"]: item["key"] for item in volume["secret"]["items"]}
    assert files == {"ca.crt": "ca.crt", "tls.crt": "tls.crt", "tls.key": "tls.key"}
    # Each file serve is told of is one the Secret's volume holds.
    for variable in ("ODRADEK_ETCD_CA", "ODRADEK_ETCD_CERT", "ODRADEK_ETCD_KEY"):
        path = variables[variable]["value"]
        assert path.rpartition("/")[0] == directory and path.rpartition("/")[2] in files, variable
    # The password from the Secret, never a value in the pod's spec.
    assert variables["ODRADEK_ETCD_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "etcd-odradek", "key": "password"}
    }
    assert "value" not in variables["ODRADEK_ETCD_PASSWORD"]
    settings = settings_from(build_parser().parse_args(["serve"]), serve_environment(result))
    assert endpoints_tls(settings.etcd or "")
    assert (settings.etcd_ca, settings.etcd_cert, settings.etcd_key) == (
        f"{directory}/ca.crt",
        f"{directory}/tls.crt",
        f"{directory}/tls.key",
    )
    assert (settings.etcd_user, settings.etcd_password) == ("odradek", SECRET_VALUE)


def test_the_deployed_etcd_over_tls_is_reached_at_https_urls(rendered: dict[str, Rendered | str]) -> None:
    result = chart(rendered, "deployed-etcd-tls")
    environment = serve_environment(result)
    assert environment["ODRADEK_ETCD"].startswith("https://") and endpoints_tls(environment["ODRADEK_ETCD"])
    volume, directory = _etcd_tls_volume(result)
    assert volume["secret"]["items"] == [{"key": "ca.pem", "path": "ca.crt"}]
    assert environment["ODRADEK_ETCD_CA"] == f"{directory}/ca.crt"
    assert not {"ODRADEK_ETCD_CERT", "ODRADEK_ETCD_KEY", "ODRADEK_ETCD_USER"} & set(environment)


def test_without_a_secured_etcd_nothing_of_it_is_rendered(rendered: dict[str, Rendered | str]) -> None:
    result = chart(rendered, "defaults")
    assert not [name for name in result.env() if name.startswith("ODRADEK_ETCD_")]
    pod = result.one("Deployment")["spec"]["template"]["spec"]
    assert "etcd-tls" not in {volume["name"] for volume in pod["volumes"]}
    assert serve_environment(result)["ODRADEK_ETCD"].startswith("http://")


# -- the store's settings and credentials ----------------------------------------------------


def test_credentials_from_values_become_a_secret_read_as_variables(
    rendered: dict[str, Rendered | str],
) -> None:
    result = chart(rendered, "created-secret")
    secret = result.one("Secret")
    assert secret["stringData"] == {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"}
    assert result.agent()["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    # A change of credentials rolls the agents.
    annotations = result.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/credentials"])
    # No credential in the agent's plain environment; the options are serve's.
    assert "secret" not in str(result.env())
    settings = settings_from(build_parser().parse_args(["serve"]), serve_environment(result))
    assert settings.store_options == {
        "allow_http": "true",
        "endpoint": "http://minio.storage:9000",
        "region": "eu-1",
    }
    assert settings.store_flush_ms == 5


def test_an_existing_secret_is_read_and_none_is_made(rendered: dict[str, Rendered | str]) -> None:
    result = chart(rendered, "existing-secret")
    assert result.all("Secret") == []
    assert result.agent()["envFrom"] == [{"secretRef": {"name": "odradek-s3"}}]


def test_cells_reach_the_agents(rendered: dict[str, Rendered | str]) -> None:
    assert serve_environment(chart(rendered, "cells"))["ODRADEK_CELLS"] == "3"
    assert serve_environment(chart(rendered, "defaults"))["ODRADEK_CELLS"] == "1"


def _kafka_ports(ports: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [
        (port["name"], port.get("containerPort", port.get("port")))
        for port in ports
        if "kafka" in port["name"]
    ]


def test_each_cell_has_a_kafka_door_the_pod_declares(rendered: dict[str, Rendered | str]) -> None:
    """With three cells each cell's Kafka door listens on ports.kafka plus the cell's
    index and is advertised at the pod's IP with that port (serve_agent's start_kafka):
    the container declares every one of them. The Services carry the bootstrap port only
    (any agent's answers Metadata or relays it to the owner's); clients reach each
    cell's door at the pod's address Metadata names, not through a Service."""
    result = chart(rendered, "cells-kafka")
    assert result.agent()["ports"] == [
        {"name": "flight", "containerPort": 8815, "protocol": "TCP"},
        {"name": "kafka", "containerPort": 9092, "protocol": "TCP"},
        {"name": "kafka-1", "containerPort": 9093, "protocol": "TCP"},
        {"name": "kafka-2", "containerPort": 9094, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9464, "protocol": "TCP"},
    ]
    services = {service["metadata"]["name"]: service["spec"]["ports"] for service in result.all("Service")}
    assert set(services) == {f"{RELEASE}-odradek", f"{RELEASE}-odradek-agents"}
    for ports in services.values():
        assert [port for port in ports if "kafka" in port["name"]] == [
            {"name": "kafka", "port": 9092, "targetPort": "kafka", "protocol": "TCP"}
        ]
        assert "registry" not in {port["name"] for port in ports}
    # The chart makes no NetworkPolicy (docs/kubernetes.md says what one of yours admits).
    assert "NetworkPolicy" not in result.kinds()
    # What serve opens from the rendered settings: every door's port declared, no other.
    settings = settings_from(build_parser().parse_args(["serve"]), serve_environment(result))
    assert settings.cells == 3 and settings.registry_listen is None
    declared = [port for _, port in _kafka_ports(result.agent()["ports"])]
    listen_host, listen_port = split_address(settings.kafka_listen or "", "kafka")
    advertised_host, advertised_port = split_address(settings.kafka_advertised or "", "kafka")
    assert (listen_host, advertised_host) == ("0.0.0.0", POD_IP)
    assert [listen_port + index for index in range(settings.cells)] == declared
    assert [advertised_port + index for index in range(settings.cells)] == declared
    assert "9092 to 9094" in result.notes


def test_with_cells_every_agent_serves_the_registry_door(rendered: dict[str, Rendered | str]) -> None:
    """With three cells every agent's registry door answers for every cell (decision
    0034): the container declares it beside the Kafka doors, the Services carry it."""
    result = chart(rendered, "cells-registry")
    names = [port["name"] for port in result.agent()["ports"]]
    assert names == ["flight", "kafka", "kafka-1", "kafka-2", "registry", "metrics"]
    for service in result.all("Service"):
        assert "registry" in {port["name"] for port in service["spec"]["ports"]}
    settings = settings_from(build_parser().parse_args(["serve"]), serve_environment(result))
    assert settings.cells == 3 and settings.registry_listen == "0.0.0.0:8081"


def test_the_last_cells_door_may_take_the_highest_port(rendered: dict[str, Rendered | str]) -> None:
    result = chart(rendered, "cells-kafka-top-port")
    assert _kafka_ports(result.agent()["ports"]) == [("kafka", 65533), ("kafka-1", 65534), ("kafka-2", 65535)]
    for service in result.all("Service"):
        assert _kafka_ports(service["spec"]["ports"]) == [("kafka", 65533)]


def test_one_cell_has_one_kafka_door(rendered: dict[str, Rendered | str]) -> None:
    result = chart(rendered, "defaults")
    assert _kafka_ports(result.agent()["ports"]) == [("kafka", 9092)]
    assert _kafka_ports(chart(rendered, "cells").agent()["ports"]) == []  # Kafka off


def test_without_credentials_the_agent_reads_no_secret(rendered: dict[str, Rendered | str]) -> None:
    result = chart(rendered, "defaults")
    assert result.all("Secret") == []
    assert "envFrom" not in result.agent()  # the node's or the service account's identity


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_values_are_refused_with_what_to_set(rendered: dict[str, Rendered | str], case: str) -> None:
    result = rendered[case]
    assert isinstance(result, str), f"{case} rendered, but should have been refused"
    assert REFUSED[case][1] in result
