"""Regenerate gitlab-merge-requests.json: GitLab's `POST /api/v4/projects/{id}/merge_requests`
(operationId postApiV4ProjectsIdMergeRequests) from its published OpenAPI (Swagger 2.0)
description, doc/api/openapi/openapi_v2.yaml of gitlab-org/gitlab (mirrored as gitlabhq/gitlabhq,
same commits), with its request-body definition and the response entity.

    python tests/servers/openapi/extract_gitlab.py --file openapi_v2.yaml [--commit SHA]

The file is one download, e.g. https://gitlab.com/gitlab-org/gitlab/-/raw/SHA/doc/api/openapi/
openapi_v2.yaml (1.8 MB). Only the response entity's own definitions are kept: its nested $refs
(API_Entities_UserBasic, ...) are not, the emulator reads only its property names.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

COMMIT = "38605be5543221e400c72b4c42471cd55392e394"
PATH = "/api/v4/projects/{id}/merge_requests"
DEFINITIONS = ("postApiV4ProjectsIdMergeRequests", "API_Entities_MergeRequest")
OUT = Path(__file__).with_name("gitlab-merge-requests.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--commit", default=COMMIT)
    args = parser.parse_args()
    raw = args.file.read_bytes()
    description = yaml.safe_load(raw)
    operation = description["paths"][PATH]["post"]
    assert operation["operationId"] == "postApiV4ProjectsIdMergeRequests"
    out = {
        "swagger": description["swagger"],
        "info": description["info"],
        "paths": {PATH: {"post": operation}},
        "definitions": {name: description["definitions"][name] for name in DEFINITIONS},
        "x-source": {
            "repository": "gitlab-org/gitlab (GitHub mirror gitlabhq/gitlabhq)",
            "commit": args.commit,
            "file": "doc/api/openapi/openapi_v2.yaml",
            "operations": [f"POST {PATH}"],
            "kept": [f"paths[{PATH}].post", *(f"definitions.{d}" for d in DEFINITIONS)],
        },
    }
    OUT.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"{OUT.name}: from {args.file} ({args.commit})")


if __name__ == "__main__":
    main()
