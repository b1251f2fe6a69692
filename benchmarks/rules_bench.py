"""Loading the rules of 2,000 targets: one `for_each` entry against the same targets written out.

    .venv/bin/python benchmarks/rules_bench.py [--targets 2000] [--repeat 3]

The rules are daemon_bench's (20 features, KS + PSI, a source per target). Written out they are
over the rules file's bounds (1 MiB, 100,000 values), which are lifted in this process for that
file only after the template has been loaded with them. Prints each file's bytes, YAML values and
the CPU seconds of `load_config` (the best of `--repeat`), and checks both give the same config.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import daemon_bench  # a sibling module (the script's folder is on sys.path)
import yaml

from mlwatchdog.rules import Config, load_config, loader, yaml_bounds


def values(node: yaml.Node) -> int:
    """Keys, values and items, as the rules file's bound counts them."""
    inner = node.value if isinstance(node, yaml.SequenceNode) else []
    if isinstance(node, yaml.MappingNode):
        inner = [part for pair in node.value for part in pair]
    return 1 + sum(map(values, inner))


def written_out(template: dict[str, Any]) -> dict[str, Any]:
    """The rules with their one for_each entry written out as the targets it stands for."""
    [entry] = template["targets"]
    body = yaml.safe_dump({k: v for k, v in entry.items() if k != "for_each"}, sort_keys=False)
    targets = [yaml.safe_load(body.replace("{{i}}", item["i"])) for item in entry["for_each"]]
    return {**template, "targets": targets}


def best_load(path: Path, repeat: int) -> tuple[float, Config]:
    seconds = []
    for _ in range(repeat):
        start = time.process_time()
        config = load_config(path, env={})
        seconds.append(time.process_time() - start)
    return min(seconds), config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlwatchdog-rules-bench-") as name:
        folder = Path(name)
        template = folder / "template.yaml"
        layout = daemon_bench.MINUTE_LAYOUT
        daemon_bench.write_config(template, folder, args.targets, layout, "1m", bundles=False)
        written = folder / "written.yaml"
        written.write_text(yaml.safe_dump(written_out(yaml.safe_load(template.read_text()))))
        print(f"{daemon_bench.machine()}; {daemon_bench.code_version()}")
        print(f"load (1 min) at the start: {os.getloadavg()[0]:.2f}")
        rows = []
        for label, path in (("one for_each entry", template), ("written out", written)):
            if path is written:  # over the file's bounds: lifted for this one
                loader.MAX_BYTES = yaml_bounds.MAX_BYTES = yaml_bounds.MAX_VALUES = 1 << 30
            count = values(yaml_bounds.compose_yaml(path.read_text()))
            seconds, config = best_load(path, args.repeat)
            rows.append((label, path.stat().st_size, count, seconds, config))
    assert rows[0][4] == rows[1][4], "the template and the targets written out differ"
    print(f"| {args.targets:,} targets | bytes | YAML values | load_config CPU |")
    print("|---|---:|---:|---:|")
    for label, size, count, seconds, _ in rows:
        print(f"| {label} | {size:,} | {count:,} | {seconds:.2f} s |")
    print(f"load (1 min) at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
