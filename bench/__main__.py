"""``make bench``: run every benchmark module in this folder and write ``var/bench/<name>.json``.

``python -m bench NAME ...`` runs only the named ones. Benchmarks print numbers; they never pass or fail on
speed. Each runs in a Python process of its own, so no benchmark's settings (``PARTNERFLOW_WAREHOUSE_URL``
of a server it has stopped, cached engines) reach the next.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

from partnerflow.core.paths import var_dir


def main(names: list[str]) -> int:
    here = Path(__file__).parent
    available = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))
    chosen = names or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        print(f"no such benchmark: {', '.join(unknown)} (have: {', '.join(available)})", file=sys.stderr)
        return 2
    if len(chosen) > 1:
        failed = [name for name in chosen if subprocess.run([sys.executable, "-m", "bench", name]).returncode]
        if failed:
            print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1 if failed else 0
    (name,) = chosen
    out = var_dir() / "bench"
    out.mkdir(parents=True, exist_ok=True)
    print(f"== bench {name}", flush=True)
    figures = importlib.import_module(f"bench.{name}").main()
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str))
    print(f"   written to {out / f'{name}.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
