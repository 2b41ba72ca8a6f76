"""RayJob builders: submitter command, submitter Job, per-attempt RayCluster, HTTP submit body."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rayop.builders import rayjob as B


def rayjob(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "entrypoint": "python /app/main.py",
        "rayClusterSpec": {
            "rayVersion": "2.60.0",
            "headGroupSpec": {
                "rayStartParams": {},
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "ray-head",
                                "image": "rayproject/ray:2.60.0",
                                "imagePullPolicy": "IfNotPresent",
                                "ports": [{"name": "dashboard", "containerPort": 8265}],
                            }
                        ],
                        "imagePullSecrets": [{"name": "regcred"}],
                    }
                },
            },
        },
    }
    base.update(spec)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {
            "name": "rj",
            "namespace": "ns",
            "uid": "uid-1",
            "labels": {"team": "a"},
            "annotations": {"note": "x"},
        },
        "spec": base,
        "status": {"jobId": "test-job-id", "dashboardURL": "test-url", "rayClusterName": "rj-abcde"},
    }


def cluster_of(rj: dict[str, Any]) -> dict[str, Any]:
    return B.build_rayjob_cluster(rj, "rj-abcde")


HEALTH = (
    "python -c \"import sys, urllib.request; sys.exit(0 if b'success' in "
    "urllib.request.urlopen('http://test-url/api/gcs_healthz', timeout=10).read() else 1)\""
)


def test_k8s_job_mode_command_matches_kuberay_shape() -> None:
    rj = rayjob(entrypoint=" echo no quote 'single quote' \"double quote\" ")
    got = " ".join(B.build_submitter_command(rj))
    assert got == (
        f"until {HEALTH} >/dev/null 2>&1 ; "
        'do echo "Waiting for Ray Dashboard GCS to become healthy at http://test-url ..." ; sleep 2 ; done ; '
        "if ! ray job status --address http://test-url test-job-id >/dev/null 2>&1 ; "
        "then ray job submit --address http://test-url --no-wait --submission-id test-job-id "
        "-- echo no quote 'single quote' \"double quote\" ; "
        "fi ; ray job logs --address http://test-url --follow test-job-id"
    )


def test_command_options_runtime_env_metadata_resources() -> None:
    rj = rayjob(
        runtimeEnvYAML="pip:\n  - requests==2.26.0\nenv_vars:\n  B: '2'\n  A: <x&y>\n",
        metadata={"owner": "me", "a": "b"},
        entrypointNumCpus=1,
        entrypointNumGpus=0.5,
        entrypointResources='{"r1": 1}',
    )
    words = B.build_submitter_command(rj)
    i = words.index("--runtime-env-json")
    assert words[i + 1] == (
        '"{\\"env_vars\\":{\\"A\\":\\"\\\\u003cx\\\\u0026y\\\\u003e\\",\\"B\\":\\"2\\"},'
        '\\"pip\\":[\\"requests==2.26.0\\"]}"'
    )
    assert words[words.index("--metadata-json") + 1] == '"{\\"a\\":\\"b\\",\\"owner\\":\\"me\\"}"'
    assert words[words.index("--entrypoint-num-cpus") + 1] == "1.000000"
    assert words[words.index("--entrypoint-num-gpus") + 1] == "0.500000"
    assert words[words.index("--entrypoint-resources") + 1] == '"{\\"r1\\": 1}"'
    # order: runtime env, metadata, submission id, cpus, gpus, resources, then the entrypoint
    order = [
        words.index(k)
        for k in (
            "--no-wait",
            "--runtime-env-json",
            "--metadata-json",
            "--submission-id",
            "--entrypoint-num-cpus",
            "--entrypoint-num-gpus",
            "--entrypoint-resources",
            "--",
        )
    ]
    assert order == sorted(order)


def test_sidecar_command_is_plain_blocking_submit_on_localhost() -> None:
    rj = rayjob(submissionMode="SidecarMode")
    got = " ".join(B.build_submitter_command(rj))
    assert "http://localhost:8265/api/gcs_healthz" in got
    assert (
        "ray job submit --address http://127.0.0.1:8265 --submission-id test-job-id -- python /app/main.py ;"
        in got
    )
    assert "--no-wait" not in got
    assert "ray job status" not in got
    with_restart = " ".join(B.build_submitter_command(rj, sidecar_restart=True))
    assert "--no-wait" in with_restart
    assert with_restart.endswith("ray job logs --address http://127.0.0.1:8265 --follow test-job-id")


def test_unsupported_mode_and_bad_inputs() -> None:
    with pytest.raises(B.JobSpecError):
        B.build_submitter_command(rayjob(submissionMode="HTTPMode"))
    with pytest.raises(B.JobSpecError, match="not valid YAML"):
        B.runtime_env_yaml_to_json("pip: [a\n")
    with pytest.raises(B.JobSpecError, match="mapping"):
        B.runtime_env_yaml_to_json("- a\n- b\n")
    rj = rayjob(metadata={"a": "b"})
    rj["spec"]["rayClusterSpec"]["rayVersion"] = "2.5.1"
    with pytest.raises(B.JobSpecError, match=r"2\.6\.0"):
        B.build_submitter_command(rj)
    with pytest.raises(B.JobSpecError, match="entrypointResources"):
        B.build_submit_request(rayjob(entrypointResources="{nope"), "x")


def test_go_helpers() -> None:
    assert B.go_quote('a"b\\c\nd\te\x01') == '"a\\"b\\\\c\\nd\\te\\x01"'
    assert B.go_quote("héllo") == '"héllo"'
    assert B.go_json({"b": 1, "a": [True, None]}) == '{"a":[true,null],"b":1}'
    assert B.go_float(2) == "2.000000"
    assert B.runtime_env_yaml_to_json("") == "{}"


def test_submitter_job_defaults() -> None:
    rj = rayjob()
    job = B.build_submitter_job(rj, cluster_of(rj))
    assert job["metadata"]["name"] == "rj"
    assert job["metadata"]["namespace"] == "ns"
    assert job["metadata"]["labels"] == {
        "ray.io/originated-from-cr-name": "rj",
        "ray.io/originated-from-crd": "RayJob",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "RayJob",
        "rj",
        "uid-1",
        True,
    )
    assert job["spec"]["backoffLimit"] == 2
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    c = pod["containers"][0]
    assert c["name"] == "ray-job-submitter"
    assert c["image"] == "rayproject/ray:2.60.0"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["resources"] == {
        "limits": {"cpu": "1", "memory": "1Gi"},
        "requests": {"cpu": "500m", "memory": "200Mi"},
    }
    assert c["command"] == ["/bin/bash", "-ce", "--"]
    assert len(c["args"]) == 1
    assert c["args"][0].startswith("until python -c")
    assert c["env"] == [
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "RAY_DASHBOARD_ADDRESS", "value": "test-url"},
        {"name": "RAY_JOB_SUBMISSION_ID", "value": "test-job-id"},
    ]
    login = B.build_submitter_job(rj, cluster_of(rj), login_shell=True)
    assert login["spec"]["template"]["spec"]["containers"][0]["command"] == ["/bin/bash", "-lce", "--"]


def test_submitter_job_user_template_and_backoff() -> None:
    rj = rayjob(
        submitterConfig={"backoffLimit": 0},
        submitterPodTemplate={
            "metadata": {"labels": {"x": "y"}},
            "spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "mine", "image": "custom:1", "env": [{"name": "K", "value": "V"}]}],
            },
        },
    )
    job = B.build_submitter_job(rj, cluster_of(rj))
    assert job["spec"]["backoffLimit"] == 0
    tpl = job["spec"]["template"]
    assert tpl["metadata"] == {"labels": {"x": "y"}}
    pod = tpl["spec"]
    assert pod["restartPolicy"] == "OnFailure"
    c = pod["containers"][0]
    assert (c["name"], c["image"]) == ("mine", "custom:1")
    assert "ray job submit" in c["args"][0]
    assert [e["name"] for e in c["env"]] == [
        "K",
        "PYTHONUNBUFFERED",
        "RAY_DASHBOARD_ADDRESS",
        "RAY_JOB_SUBMISSION_ID",
    ]
    # the user's own command is kept as is
    rj["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["command"] = ["my-submit"]
    c2 = B.build_submitter_job(rj, cluster_of(rj))["spec"]["template"]["spec"]["containers"][0]
    assert c2["command"] == ["my-submit"]
    assert "args" not in c2
    # the builder never mutates its input
    assert "env" not in rj["spec"]["submitterPodTemplate"]["spec"]["containers"][0] or rj["spec"][
        "submitterPodTemplate"
    ]["spec"]["containers"][0]["env"] == [{"name": "K", "value": "V"}]


def test_rayjob_cluster() -> None:
    rj = rayjob()
    rc = B.build_rayjob_cluster(rj, "rj-abcde")
    assert rc["apiVersion"] == "ray.io/v1"
    assert rc["kind"] == "RayCluster"
    assert rc["metadata"]["name"] == "rj-abcde"
    assert rc["metadata"]["namespace"] == "ns"
    assert rc["metadata"]["labels"] == {
        "team": "a",
        "ray.io/originated-from-cr-name": "rj",
        "ray.io/originated-from-crd": "RayJob",
        "ray.io/job-submission-mode": "K8sJobMode",
    }
    assert rc["metadata"]["annotations"] == {"note": "x"}
    assert rc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert rc["spec"] == rj["spec"]["rayClusterSpec"]
    assert rc["spec"] is not rj["spec"]["rayClusterSpec"]


def test_sidecar_cluster_gets_submitter_container() -> None:
    rj = rayjob(submissionMode="SidecarMode")
    rc = B.build_rayjob_cluster(rj, "rj-abcde")
    assert rc["metadata"]["annotations"]["ray.io/disable-provisioned-head-restart"] == "true"
    pod = rc["spec"]["headGroupSpec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert [c["name"] for c in pod["containers"]] == ["ray-head", "ray-job-submitter"]
    side = pod["containers"][1]
    assert side["image"] == "rayproject/ray:2.60.0"
    assert "http://127.0.0.1:8265" in side["args"][0]
    assert "restartPolicy" not in side
    assert len(rj["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"]) == 1


def test_submit_request() -> None:
    rj = rayjob(
        runtimeEnvYAML="env_vars:\n  A: '1'\n",
        metadata={"k": "v"},
        entrypointNumCpus=0.5,
        entrypointResources='{"custom": 2}',
    )
    req = B.build_submit_request(rj, "rj-xyz12")
    assert req == {
        "entrypoint": "python /app/main.py",
        "submission_id": "rj-xyz12",
        "metadata": {"k": "v"},
        "runtime_env": {"env_vars": {"A": "1"}},
        "entrypoint_num_cpus": 0.5,
        "entrypoint_resources": {"custom": 2.0},
    }
    json.dumps(req)


def test_names_and_dashboard_url() -> None:
    rc = {"metadata": {"name": "c1"}, "spec": {}}
    assert B.head_service_name(rc) == "c1-head-svc"
    rc2 = {
        "metadata": {"name": "c1"},
        "spec": {"headGroupSpec": {"headService": {"metadata": {"name": "h"}}}},
    }
    assert B.head_service_name(rc2) == "h"
    svc = {
        "metadata": {"name": "c1-head-svc", "namespace": "ns"},
        "spec": {"ports": [{"name": "gcs-server", "port": 6379}, {"name": "dashboard", "port": 8265}]},
    }
    assert B.dashboard_url_from_service(svc) == "c1-head-svc.ns.svc.cluster.local:8265"
    assert B.dashboard_url_from_service(svc, "k.test") == "c1-head-svc.ns.svc.k.test:8265"
    assert B.dashboard_url_from_service({"metadata": {}, "spec": {"ports": []}}) == ""
    assert B.suffixed_name("rj", "b2c4d") == "rj-b2c4d"


def test_token_auth_reaches_the_submitter() -> None:
    rj = rayjob()
    rj["spec"]["rayClusterSpec"]["authOptions"] = {"mode": "token"}
    rc = cluster_of(rj)
    env = B.build_submitter_job(rj, rc)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "RAY_AUTH_MODE", "value": "token"} in env
    tok = next(e for e in env if e["name"] == "RAY_AUTH_TOKEN")
    assert tok["valueFrom"]["secretKeyRef"] == {"name": "rj-abcde", "key": "auth_token"}
    rj["spec"]["submissionMode"] = "SidecarMode"
    side = B.build_rayjob_cluster(rj, "rj-abcde")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][
        1
    ]
    assert any(e["name"] == "RAY_AUTH_TOKEN" for e in side["env"])
