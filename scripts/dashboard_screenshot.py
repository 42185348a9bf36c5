"""Screenshot of a TensorBoard dashboard of a sweep, with headless Chromium (`apt-get install chromium`).

    python -m trainer -m optimizer=sgd,adam optimizer.lr=0.1,0.01 epochs=2 hydra.sweep.dir=multirun/demo
    python scripts/dashboard_screenshot.py multirun/demo docs/hparams.png            # the HParams tab
    python scripts/dashboard_screenshot.py multirun/demo custom.png custom_scalars   # another tab
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout

from trainer.tb_server import tensorboard  # noqa: E402


def screenshot(logdir: Path, out: Path, tab: str = "hparams", size: str = "1600,900") -> Path:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        sys.exit("error: no Chromium found; install it, e.g. `apt-get install -y chromium`")
    runs = len({p.parent for p in logdir.rglob("events.out.tfevents.*")})
    with tensorboard(logdir, runs=runs) as server:
        # --virtual-time-budget: let the page load its data before the picture is taken.
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={size}", "--virtual-time-budget=20000", f"--screenshot={out}",
                        f"{server.url}/#{tab}"], check=True, capture_output=True, timeout=120)
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2]).resolve(), *sys.argv[3:]))
