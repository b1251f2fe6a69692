"""Regenerate the vendored CRD schemas from ../shared/crds (next to the repository).

Run from anywhere: `.venv/bin/python tests/kube/crds/vendor.py [SOURCE_DIR]`.

Only the `openAPIV3Schema` of the one served version is kept, as gzip JSON with sorted keys and a
zero gzip mtime, so regenerating from unchanged sources gives byte-identical files (clean diffs).
CI's fresh clone may not have ../shared, which is why the extracted schemas are committed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DEFAULT_SOURCE = REPO.parent / "shared" / "crds"

# vendored file -> (source file in ../shared/crds, CRD version whose schema we keep)
VENDORED: dict[str, tuple[str, str]] = {
    "rollout.v1alpha1.json.gz": ("rollout-crd.yaml", "v1alpha1"),
    "inferenceservice.v1beta1.json.gz": ("serving.kserve.io_inferenceservices.yaml", "v1beta1"),
    # deploy/examples/argo-rollout.yaml's AnalysisTemplate (tests/deploy validate it)
    "analysistemplate.v1alpha1.json.gz": ("analysis-template-crd.yaml", "v1alpha1"),
}

# GitOps controllers' CRDs (issue 13: tests/integration/test_gitops.py), taken straight from
# upstream snapshots (`git show COMMIT:PATH`); regenerate with `vendor.py --gitops MIRRORS`, where
# MIRRORS/<owner>+<name>/repo are bare clones.
# vendored file -> (repo, path, commit, CRD version, sha256 of the file)
GITOPS: dict[str, tuple[str, str, str, str, str]] = {
    "application.v1alpha1.json.gz": (
        "argoproj/argo-cd",
        "manifests/crds/application-crd.yaml",
        "37ee0097cf851bc2dd7665fc081bbce61a7e836e",  # master 2026-08-22, v0.8.0-10899-g37ee0097cf
        "v1alpha1",
        "9fd0da3e7097ad6d1af614fabd5c960bc7ddb00d768c3ef485a2fda6e9460df8",
    ),
    "kustomization.v1.json.gz": (
        "fluxcd/kustomize-controller",
        "config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml",
        "186fb3b29138ce82ff61ba1a9370b96a3dd598fe",  # main 2026-08-01, v1.9.0-36-g186fb3b
        "v1",
        "da23ca0e6b4c80d3d26a91583137491e147ef4ef1e2208aece0d0af4ef851974",
    ),
    "helmrelease.v2.json.gz": (
        "fluxcd/helm-controller",
        "config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml",
        "0f61a8607a62be64638f2f912d9487e653960a6e",  # main 2026-07-23, v1.6.0-21-g0f61a86
        "v2",
        "aa8638ac68465ceac1f93a617baf5be833c589c51fd78a7384a4a274c252becc",
    ),
    # Flagger's Canary (issue 13: the flagger-canary driver, deploy/examples/flagger-canary.yaml);
    # crd.yaml holds several CRDs: the one whose singular name starts the vendored file's name.
    "canary.v1beta1.json.gz": (
        "fluxcd/flagger",
        "artifacts/flagger/crd.yaml",
        "15bd6ad555e6c935da55f0ab95977be74c149bd6",  # main 2026-07-21, v1.44.0
        "v1beta1",
        "8d7ad05c2d1d242c0cd4c25c5fb3ad0f75f10706da588aeeb950fe2858134630",
    ),
}

# The C loader parses the 1.9 MB InferenceService CRD in a fraction of the pure-Python time.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def extract(source_dir: Path, filename: str, version: str) -> dict[str, Any]:
    """The openAPIV3Schema of `version` in the CRD file."""
    with open(source_dir / filename, encoding="utf-8") as f:
        crd = yaml.load(f, Loader=_Loader)
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(f"{filename} has no version {version}")


def extract_all(source_dir: Path = DEFAULT_SOURCE) -> dict[str, dict[str, Any]]:
    """Vendored file name -> freshly extracted schema."""
    return {name: extract(source_dir, src, ver) for name, (src, ver) in VENDORED.items()}


def load_vendored(name: str) -> dict[str, Any]:
    with gzip.open(HERE / name, "rt", encoding="utf-8") as f:
        schema: dict[str, Any] = json.load(f)
        return schema


def encode(schema: dict[str, Any]) -> bytes:
    """Deterministic gzip JSON: sorted keys, no timestamp or file name in the gzip header."""
    text = json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n"
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    return buf.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sources_md(source_dir: Path) -> str:
    """SOURCES.md: the upstream rows of ../shared/crds/SOURCES.md for our files, plus sha256s."""
    upstream = (source_dir / "SOURCES.md").read_text(encoding="utf-8").splitlines()
    header = [line for line in upstream if line.startswith("| file here")]
    header += [line for line in upstream if line.startswith("|---")][:1]
    rows = [
        line for line in upstream for src, _ in VENDORED.values() if line.startswith(f"| {src} |")
    ]
    lines = [
        "# Vendored CRD schemas",
        "",
        "Generated by `vendor.py` from `../shared/crds` (beside the repository); do not edit.",
        "Each `.json.gz` is the `openAPIV3Schema` of one CRD version, gzip JSON with sorted keys.",
        "Upstream licence: Apache-2.0. The rows below are copied from `../shared/crds/SOURCES.md`.",
        "",
        "| vendored file | source file | CRD version |",
        "|---|---|---|",
        *(f"| {name} | {src} | {ver} |" for name, (src, ver) in VENDORED.items()),
        "",
        *header,
        *rows,
        "",
        "sha256 of the source files",
        "```",
        *(f"{sha256(source_dir / src)}  {src}" for src, _ in VENDORED.values()),
        "```",
        "",
        *gitops_md(),
    ]
    return "\n".join(lines)


def gitops_md() -> list[str]:
    """The GitOps CRDs' rows (`GITOPS`): where each vendored schema came from."""
    return [
        "## GitOps controllers and Flagger (`vendor.py --gitops MIRRORS`, from upstream snapshots)",
        "",
        "| vendored file | repo | path in repo | snapshot commit | CRD version | sha256 |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {repo} | {path} | {commit} | {ver} | {digest} |"
            for name, (repo, path, commit, ver, digest) in GITOPS.items()
        ),
        "",
    ]


def vendor_gitops(mirrors: Path) -> None:
    """Extract the GITOPS schemas from bare clones at MIRRORS/<owner>+<name>/repo."""
    import subprocess

    for name, (repo, path, commit, version, digest) in GITOPS.items():
        git_dir = mirrors / repo.replace("/", "+") / "repo"
        raw = subprocess.run(
            ["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"],
            check=True,
            capture_output=True,
        ).stdout
        if hashlib.sha256(raw).hexdigest() != digest:
            raise SystemExit(f"{repo}/{path} at {commit} is not the file recorded in GITOPS")
        singular = name.split(".")[0]
        crd = next(
            doc
            for doc in yaml.load_all(raw, Loader=_Loader)
            if doc and doc["spec"]["names"].get("singular", singular) == singular
        )
        served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
        (HERE / name).write_bytes(encode(served["schema"]["openAPIV3Schema"]))
        print(f"wrote {HERE / name}")


def main(argv: list[str]) -> int:
    if len(argv) > 2 and argv[1] == "--gitops":
        vendor_gitops(Path(argv[2]))
        return 0
    source_dir = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    if not source_dir.is_dir():
        print(f"{source_dir} is absent: nothing to vendor from", file=sys.stderr)
        return 1
    for name, schema in extract_all(source_dir).items():
        (HERE / name).write_bytes(encode(schema))
        print(f"wrote {HERE / name}")
    (HERE / "SOURCES.md").write_text(sources_md(source_dir), encoding="utf-8")
    print(f"wrote {HERE / 'SOURCES.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
