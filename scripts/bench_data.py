"""Time data preparation for an image set: the first run (read the raw files, write the cache)
against later runs (load the cache), each repeated; prints medians.

    python scripts/bench_data.py data=mnist data.root=~/.cache/trainer/data [--repeats 5]

Takes the same `data.*` overrides as the trainer. Deletes and rewrites ROOT/prepared/NAME.pt.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hydra import compose, initialize_config_dir  # noqa: E402

from trainer.config.build import build_data  # noqa: E402
from trainer.config.validate import config_dir  # noqa: E402
from trainer.data import (
    load_source,  # noqa: E402
    prepare_data,  # noqa: E402
)
from trainer.data.vision import default_root  # noqa: E402
from trainer.runtime.cli import fail  # noqa: E402
from trainer.runtime.errors import UserError  # noqa: E402


def main() -> None:
    try:
        measure()
    except UserError as exc:  # offline without the files, a bad override: one paragraph, no traceback
        fail(str(exc))


def measure() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data=mnist data.root=DIR")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=args.overrides)
    data = cfg.data
    root = Path(data.root).expanduser() if data.get("root") else default_root()
    cache = root / "prepared" / f"{data.name}.pt"
    options = {"root": str(root), "download": data.get("download", True)}
    for label, cold in (("first run (raw files, writes the cache)", True), ("later runs (cache)", False)):
        load, total = [], []
        for _ in range(args.repeats):
            if cold:
                cache.unlink(missing_ok=True)
            t0 = time.perf_counter()
            load_source(data.name, **options)
            load.append(time.perf_counter() - t0)
            if cold:
                cache.unlink(missing_ok=True)
            t0 = time.perf_counter()
            prepare_data(build_data(data), args.device)
            total.append(time.perf_counter() - t0)
        print(f"{data.name} {label}: load_source median {statistics.median(load):.3f} s, "
              f"load + split + {data.preprocess} median {statistics.median(total):.3f} s "
              f"({args.repeats} runs)")


if __name__ == "__main__":
    main()
