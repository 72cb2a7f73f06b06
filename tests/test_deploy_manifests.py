"""The Kubernetes manifests of the deployment recipe (deploy/kubernetes/, docs/cluster.md)
are valid, checked without a cluster: Kubernetes' own kinds (Job, Secret) against the
schemas that kubernetes-validate ships (strict: an unknown field is an error). The
RayCluster's own fields are checked against RAYCLUSTER below, our schema of the KubeRay
ray.io/v1 fields the recipe uses (written from KubeRay's documentation, strict: a field
it does not know is an error), and each of its pod templates against Kubernetes'
PodTemplate schema, again with kubernetes-validate.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_TEMPLATE = {"type": "object"}  # a PodTemplateSpec: checked by kubernetes-validate (pod_templates)
RAYCLUSTER: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayCluster"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                           "labels": _STRING_MAP, "annotations": _STRING_MAP},
        },
        "spec": {
            "type": "object",
            "required": ["headGroupSpec"],
            "additionalProperties": False,
            "properties": {
                "rayVersion": {"type": "string"},
                "enableInTreeAutoscaling": {"type": "boolean"},
                "authOptions": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"mode": {"enum": ["disabled", "token"]}, "secretName": {"type": "string"}},
                },
                "headGroupSpec": {
                    "type": "object",
                    "required": ["template"],
                    "additionalProperties": False,
                    "properties": {"rayStartParams": _STRING_MAP, "serviceType": {"type": "string"},
                                   "template": _TEMPLATE},
                },
                "workerGroupSpecs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["groupName", "template"],
                        "additionalProperties": False,
                        "properties": {
                            "groupName": {"type": "string"},
                            "replicas": {"type": "integer", "minimum": 0},
                            "minReplicas": {"type": "integer", "minimum": 0},
                            "maxReplicas": {"type": "integer", "minimum": 0},
                            "rayStartParams": _STRING_MAP,
                            "template": _TEMPLATE,
                        },
                    },
                },
            },
        },
    },
}  # fmt: skip


def pod_templates(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """The RayCluster's pod templates as Kubernetes PodTemplate objects."""
    spec = cluster["spec"]
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    return [{"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"template-{i}"},
             "template": group["template"]} for i, group in enumerate(groups)]  # fmt: skip


def kubernetes_problems(doc: dict[str, Any]) -> list[str]:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")  # the dev extra installs it
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.path))}: {exc.message}"]
    return []


def check(doc: dict[str, Any]) -> list[str]:
    if doc["kind"] == "RayCluster":
        problems = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft7Validator(RAYCLUSTER).iter_errors(doc)
        ]
        return problems + [p for template in pod_templates(doc) for p in kubernetes_problems(template)]
    return kubernetes_problems(doc)


@pytest.mark.parametrize("name,doc", documents(), ids=[name for name, _ in documents()])
def test_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    assert check(doc) == [], name


def test_every_kind_of_the_recipe_is_there() -> None:
    kinds = sorted({doc["kind"] for _, doc in documents()})
    assert kinds == ["Job", "RayCluster", "Secret"]


@pytest.mark.parametrize("kind", ["RayCluster", "Job"])
def test_a_misspelt_field_is_caught(kind: str) -> None:
    (doc,) = [copy.deepcopy(d) for _, d in documents() if d["kind"] == kind]
    doc["spec"]["replica"] = 2  # a typo kubectl would refuse
    assert check(doc) != []


def test_a_misspelt_field_in_a_pod_template_is_caught() -> None:
    (doc,) = [copy.deepcopy(d) for _, d in documents() if d["kind"] == "RayCluster"]
    doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert check(doc) != []


def test_the_workers_offer_what_the_search_asks_for() -> None:
    (cluster,) = [d for _, d in documents() if d["kind"] == "RayCluster"]
    (job,) = [d for _, d in documents() if d["kind"] == "Job"]
    offered = json.loads(json.loads(cluster["spec"]["workerGroupSpecs"][0]["rayStartParams"]["resources"]))
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    (asked,) = [json.loads(a.split("=", 1)[1]) for a in args if a.startswith("--ray-resources=")]
    assert set(asked) <= set(offered)
    assert "--ray-address=ray://promptopt-head-svc:10001" in args  # KubeRay's head service
    env = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"OPENAI_API_KEY", "PROMPTOPT_DB", "RAY_AUTH_TOKEN"} <= env
