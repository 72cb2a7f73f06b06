"""The Kubernetes manifests of the deployment recipe (deploy/kubernetes/, docs/cluster.md)
are valid, checked without a cluster: Kubernetes' own kinds (Job, Secret) against the
schemas that kubernetes-validate ships (strict: an unknown field is an error), the
RayCluster against KubeRay's CRD schema vendored in deploy/kubernetes/schema/ (made
strict here the same way, since a CRD's schema alone lets unknown fields through).
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


def strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` wherever an object lists its
    properties and says nothing of others (what kubectl's field validation rejects)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def raycluster_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((DEPLOY / "schema" / "raycluster-v1.schema.json").read_text())
    return jsonschema.Draft7Validator(strict(schema))


def check(doc: dict[str, Any]) -> list[str]:
    if doc["kind"] == "RayCluster":
        assert doc["apiVersion"] == "ray.io/v1"
        return [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in raycluster_validator().iter_errors(doc)
        ]
    kubernetes_validate = pytest.importorskip("kubernetes_validate")  # the dev extra installs it
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.path))}: {exc.message}"]
    return []


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
