"""``python -m benchmarks {load,freshness,all} [--out FILE]``: run, print and save results.

To add a benchmark: a module with ``add_arguments(parser)`` and ``run(args) -> dict``,
listed in :data:`BENCHMARKS`. ``all`` runs every one with its defaults. The JSON
file maps benchmark name -> result and is merged with an existing file, so
several invocations can fill one file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

BENCHMARKS = {
    "load": "benchmarks.load",
    "freshness": "benchmarks.freshness",
    "find": "benchmarks.find",
}


def _write(out: Path, results: dict[str, Any]) -> None:
    merged: dict[str, Any] = {}
    if out.exists():
        try:
            merged = json.loads(out.read_text())
        except json.JSONDecodeError:
            merged = {}
    merged.update(results)
    out.write_text(json.dumps(merged, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="name", required=True)
    modules = {name: importlib.import_module(path) for name, path in BENCHMARKS.items()}
    for name, module in modules.items():
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(p)
        p.add_argument("--out", type=Path, default=None, help="write/merge results JSON here")
    everything = sub.add_parser("all", help="every benchmark with its defaults")
    everything.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    results: dict[str, Any] = {}
    if args.name == "all":
        for name, module in modules.items():
            defaults = argparse.ArgumentParser()
            module.add_arguments(defaults)
            results[name] = module.run(defaults.parse_args([]))
            print(json.dumps({name: results[name]}, indent=2), flush=True)
    else:
        results[args.name] = modules[args.name].run(args)
        print(json.dumps(results, indent=2), flush=True)
    if args.out:
        _write(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
