"""Dropping and defaulting against the Go types and the defaulting functions of k8s.io/kubernetes
(apiserver/defaults.py): pkg/apis/core/v1/defaults.go, pkg/apis/apps/v1/defaults.go,
pkg/apis/autoscaling/v2/defaults.go, pkg/apis/networking/v1/defaults.go."""

from __future__ import annotations

import base64
from typing import Any

from sentiment_devcluster.apiserver.defaults import drop_empty, normalize


def test_omitempty_zero_values_are_not_stored() -> None:
    """EnvVar.Value is ``string `json:"value,omitempty"```, VolumeMount.ReadOnly ``bool omitempty``, an empty
    slice or string map is omitted; a *bool false (runAsNonRoot) and an empty struct (emptyDir) are kept."""
    container = {
        "name": "app",
        "env": [{"name": "PREFIX", "value": ""}],
        "volumeMounts": [{"name": "m", "mountPath": "/m", "readOnly": False}],
        "args": [],
        "securityContext": {"runAsNonRoot": False, "privileged": False, "readOnlyRootFilesystem": True},
        "resources": {"limits": {}},
    }
    out = drop_empty(
        {"containers": [container], "volumes": [{"name": "m", "emptyDir": {}}], "nodeSelector": {}}
    )
    assert out == {
        "containers": [
            {
                "name": "app",
                "env": [{"name": "PREFIX"}],
                "volumeMounts": [{"name": "m", "mountPath": "/m"}],
                "securityContext": {
                    "runAsNonRoot": False,
                    "privileged": False,
                    "readOnlyRootFilesystem": True,
                },
                "resources": {},
            }
        ],
        "volumes": [{"name": "m", "emptyDir": {}}],
    }


def test_string_map_entries_are_data_not_fields() -> None:
    assert drop_empty({"data": {"empty": ""}, "labels": {"a": ""}}) == {
        "data": {"empty": ""},
        "labels": {"a": ""},
    }


def _deployment(**pod: Any) -> dict[str, Any]:
    pod.setdefault("containers", [{"name": "app", "image": "app:1.0"}])
    return {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": pod}}}


def test_deployment_defaults() -> None:
    """apps/v1 SetDefaults_Deployment and core/v1 SetDefaults_PodSpec / _Container / _Probe / _Volume."""
    out = normalize(
        "Deployment",
        _deployment(
            containers=[
                {
                    "name": "app",
                    "image": "app:1.0",
                    "ports": [{"containerPort": 80}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 80}},
                    "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                },
                {"name": "side", "image": "side"},
            ],
            volumes=[{"name": "s", "secret": {"secretName": "x"}}],
            serviceAccountName="sa",
        ),
    )
    spec = out["spec"]
    assert spec["replicas"] == 1
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    pod = spec["template"]["spec"]
    for key, value in {
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "serviceAccount": "sa",
    }.items():
        assert pod[key] == value, key
    app, side = pod["containers"]
    assert app["terminationMessagePath"] == "/dev/termination-log"
    assert app["terminationMessagePolicy"] == "File"
    assert app["imagePullPolicy"] == "IfNotPresent"
    assert side["imagePullPolicy"] == "Always"  # no tag means :latest
    assert app["resources"] == {}
    assert app["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert app["readinessProbe"] == {
        "httpGet": {"path": "/ready", "port": 80, "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert app["env"][0]["valueFrom"]["fieldRef"] == {"fieldPath": "metadata.name", "apiVersion": "v1"}
    assert pod["volumes"] == [{"name": "s", "secret": {"secretName": "x", "defaultMode": 420}}]


def test_given_values_are_not_overwritten_and_recreate_has_no_rolling_update() -> None:
    obj = _deployment()
    obj["spec"].update(replicas=0, strategy={"type": "Recreate"})
    out = normalize("Deployment", obj)
    assert out["spec"]["replicas"] == 0
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_service_defaults_and_a_kept_cluster_ip() -> None:
    """core/v1 SetDefaults_Service, and the ClusterIP allocator: allocated once, kept by later writes."""
    svc = {
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}},
    }
    out = normalize("Service", svc)
    spec = out["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert spec["ipFamilies"] == ["IPv4"]
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    again = normalize("Service", svc, live=out)
    assert again["spec"]["clusterIP"] == spec["clusterIP"]


def test_hpa_defaults_complete_a_given_behavior_only() -> None:
    """autoscaling/v2 SetDefaults_HorizontalPodAutoscaler(Behavior): minReplicas 1, the CPU 80% metric when
    none is given, and a given behavior's missing rules (scale up: 0 s window, 4 pods or 100 % per 15 s; scale
    down: 300 s window, 100 % per 15 s)."""
    hpa = {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"}, "spec": {"maxReplicas": 3}}
    out = normalize("HorizontalPodAutoscaler", hpa)["spec"]
    assert out["minReplicas"] == 1
    assert out["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 80}
    assert "behavior" not in out
    hpa["spec"]["behavior"] = {"scaleUp": {"stabilizationWindowSeconds": 60}}
    behavior = normalize("HorizontalPodAutoscaler", hpa)["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 60
    assert behavior["scaleUp"]["selectPolicy"] == "Max"
    assert behavior["scaleUp"]["policies"] == [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ]
    assert behavior["scaleDown"] == {
        "stabilizationWindowSeconds": 300,
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    }


def test_network_policy_and_secret_defaults() -> None:
    policy = normalize(
        "NetworkPolicy",
        {
            "kind": "NetworkPolicy",
            "metadata": {"name": "n"},
            "spec": {"ingress": [{"ports": [{"port": 80}]}]},
        },
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]
    secret = normalize(
        "Secret", {"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"pw": "hunter2"}}
    )
    assert secret["type"] == "Opaque"
    assert "stringData" not in secret
    assert base64.b64decode(secret["data"]["pw"]) == b"hunter2"
