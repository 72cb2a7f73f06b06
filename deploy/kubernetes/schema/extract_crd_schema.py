"""Extract the validation schema of one version of a CustomResourceDefinition as JSON.

    python extract_crd_schema.py ray.io_rayclusters.yaml v1 > raycluster-v1.schema.json

Descriptions are dropped (they are most of the file and do not take part in validation);
everything else is kept as the CRD states it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml


def without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [without_descriptions(v) for v in node]
    return node


def main(path: str, version: str) -> None:
    with open(path) as f:
        crd = next(doc for doc in yaml.safe_load_all(f) if doc)
    (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = without_descriptions(entry["schema"]["openAPIV3Schema"])
    json.dump(schema, sys.stdout, separators=(",", ":"), sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
