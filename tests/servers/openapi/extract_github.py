"""Regenerate github-pulls.json.gz: the `pulls/create` and `pulls/list` operations of GitHub's
REST description, with every schema they reference, from the npm package @octokit/openapi
(which ships github/rest-api-description's api.github.com description as
`package/generated/api.github.com.json`).

    python tests/servers/openapi/extract_github.py [--version 23.0.2] [--tarball FILE.tgz]

Without --tarball it runs `npm pack @octokit/openapi@VERSION` in a temporary folder. The extract
keeps the operations as published plus the components/schemas they reach through $ref (so the
$refs resolve inside the extract), and two examples the emulator answers from. OpenAPI 3.0's
`nullable: true` is rewritten to JSON Schema (`type: [T, "null"]`), the only change made, so
that a JSON Schema validator reads the schemas as GitHub means them.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

PACKAGE = "@octokit/openapi"
INSIDE = "package/generated/api.github.com.json"
PATH = "/repos/{owner}/{repo}/pulls"
EXAMPLES = ("pull-request", "pull-request-simple-items")
OUT = Path(__file__).with_name("github-pulls.json.gz")


def referenced(node: Any, components: dict[str, Any], found: set[tuple[str, str]]) -> None:
    """Every (kind, name) of components/<kind>/<name> that `node` reaches through $ref."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/"):
            kind, name = ref.split("/")[2:4]
            if (kind, name) not in found:
                found.add((kind, name))
                referenced(components[kind][name], components, found)
        for value in node.values():
            referenced(value, components, found)
    elif isinstance(node, list):
        for value in node:
            referenced(value, components, found)


def json_schema(node: Any) -> Any:
    """OpenAPI 3.0 `nullable: true` as JSON Schema."""
    if isinstance(node, list):
        return [json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: json_schema(v) for k, v in node.items()}
    if out.pop("nullable", False) is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def extract(description: dict[str, Any]) -> dict[str, Any]:
    operations = description["paths"][PATH]
    components = description["components"]
    found: set[tuple[str, str]] = {("examples", name) for name in EXAMPLES}
    referenced(operations, components, found)
    for name in EXAMPLES:
        referenced(components["examples"][name], components, found)
    kept: dict[str, dict[str, Any]] = {}
    for kind, name in sorted(found):
        value = components[kind][name]
        kept.setdefault(kind, {})[name] = value if kind == "examples" else json_schema(value)
    return {
        "info": description["info"],
        "openapi": description["openapi"],
        "paths": {PATH: json_schema(copy.deepcopy(operations))},
        "components": kept,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default="23.0.2")
    parser.add_argument("--tarball", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball
        if tarball is None:
            name = subprocess.run(
                ["npm", "pack", f"{PACKAGE}@{args.version}"],
                cwd=tmp, check=True, capture_output=True, text=True,
            ).stdout.split()[-1]  # fmt: skip
            tarball = Path(tmp) / name
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        with tarfile.open(tarball) as tar:
            member = tar.extractfile(INSIDE)
            assert member is not None
            description = json.load(member)
            meta = tar.extractfile("package/package.json")
            assert meta is not None
            package = json.load(meta)
    out = extract(description)
    out["x-source"] = {
        "package": f"npm {package['name']}@{package['version']}",
        "tarball_sha256": digest,
        "file": INSIDE,
        "operations": [f"{method.upper()} {PATH}" for method in sorted(out["paths"][PATH])],
    }
    data = json.dumps(out, sort_keys=True, separators=(",", ":")).encode()
    OUT.write_bytes(gzip.compress(data, mtime=0))
    print(f"{OUT.name}: {len(data)} bytes of JSON from {out['x-source']['package']}")


if __name__ == "__main__":
    main()
