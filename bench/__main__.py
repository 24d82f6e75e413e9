"""Run the benchmarks named on the command line (default: all), one JSON line each."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys

import bench as package


def main(argv: list[str]) -> int:
    names = argv or sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_") and m.name != "synthetic"
    )
    for name in names:
        result = importlib.import_module(f"bench.{name}").run()
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
