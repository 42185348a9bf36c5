"""The pictures of what a user sees (README.md and docs/getting-started.md), taken anew: the
terminal, TensorBoard, optuna-dashboard.

    python scripts/screenshots.py [out=docs/screenshots] [epochs=10]

It runs, in a temporary folder (never the current one): a training run in a pseudo-terminal of
118 x 32 characters (pty + TIOCSWINSZ, as a person's terminal is), replayed on a terminal
emulator (pyte) and drawn as a PNG; a 9-job vectorized sweep, shown by a real TensorBoard server
(Time Series, and HParams' parallel coordinates); and an 8-trial Optuna search, shown by a real
optuna-dashboard. The pages are looked at in headless Chromium through Selenium (Debian's
`chromium` and `chromium-driver`: `apt-get install chromium chromium-driver`).

Writes terminal.png, tensorboard_timeseries.png, tensorboard_hparams.png and optuna_dashboard.png
into `out`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import subprocess
import sys
import tempfile
import termios
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from trainer.logs.server import free_port, tensorboard

WINDOW = (1600, 1000)  # the browser's window, in pixels


def screen_of(argv: list[str], cwd: Path, cols: int = 100, rows: int = 32, timeout: float = 300) -> list[str]:
    """The rows of a `cols` x `rows` terminal after `python ARGV` ran in it, as a person would see
    them at the end (earlier lines scrolled away, as on a real screen)."""
    import pyte

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "COLUMNS", "LINES")}
    proc = subprocess.Popen([sys.executable, *argv], cwd=cwd, env={**env, "TERM": "xterm"},
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    data = bytearray()
    with contextlib.suppress(OSError):  # EIO: every writer closed the terminal
        while chunk := os.read(master, 65536):
            data += chunk
    os.close(master)
    if proc.wait(timeout=timeout) != 0:
        raise SystemExit(f"{argv} failed:\n{data.decode(errors='replace')[-3000:]}")
    screen = pyte.Screen(cols, rows)
    pyte.ByteStream(screen).feed(bytes(data))
    return [row.rstrip() for row in screen.display]


def draw_terminal(rows: list[str], path: Path) -> None:
    """A terminal's rows as a PNG: light text on a dark background, in a monospace font."""
    from matplotlib.figure import Figure

    rows = list(rows)
    while len(rows) > 1 and not rows[-1].strip():  # the screen below the last line: left out
        rows.pop()
    rows.append("")
    cols = max(len(r) for r in rows)
    fig = Figure(figsize=(cols * 0.085, len(rows) * 0.19), facecolor="#1e1e1e")
    for i, row in enumerate(rows):
        fig.text(0.01, 1 - (i + 0.8) / len(rows), row, family="monospace", fontsize=9, color="#e6e6e6")
    fig.savefig(path, dpi=110, facecolor=fig.get_facecolor())


@contextlib.contextmanager
def dashboard(argv: list[str], url: str, timeout: float = 90) -> Iterator[str]:
    """optuna-dashboard (`argv`) running until the block ends, once `url` answers."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit(f"{argv[0]} did not answer at {url}") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def browser() -> Iterator[object]:
    """Headless Chromium through Selenium, with Debian's chromium and chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def click_text(driver: object, text: str) -> None:
    """Click the element showing `text`, also inside TensorBoard's shadow DOMs (Polymer)."""
    found = driver.execute_script("""
        const want = arguments[0].toUpperCase();
        const walk = (root) => {
          for (const el of root.querySelectorAll('*')) {
            if (el.shadowRoot) { const hit = walk(el.shadowRoot); if (hit) return hit; }
            if (el.children.length === 0 && (el.textContent || '').trim().toUpperCase() === want) return el;
          }
          return null;
        };
        const el = walk(document);
        if (el) { el.click(); return true; }
        return false;""", text)
    if not found:
        raise SystemExit(f"no element shows {text!r} on {driver.current_url}")


def trainer(args: list[str], cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "trainer", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"python -m trainer {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def main(argv: list[str]) -> None:
    options = dict(a.split("=", 1) for a in argv)
    out = Path(options.get("out", "docs/screenshots")).absolute()
    epochs = options.get("epochs", "10")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trainer-screenshots-") as tmp:
        work = Path(tmp)
        run = ["-m", "trainer", f"epochs={epochs}", "batch_size=16", f"hydra.run.dir={work / 'run'}"]
        rows = screen_of(run, work, cols=118)
        draw_terminal(rows, out / "terminal.png")

        sweep = work / "sweep"
        trainer(["-m", "hydra/launcher=vectorized", "optimizer=sgd,momentum,adam",
                 "optimizer.lr=0.003,0.03,0.3", f"epochs={epochs}", f"hydra.sweep.dir={sweep}"], work)
        trainer(["-m", "+hparams_search=digits_optuna", "hydra.sweeper.n_trials=8", f"epochs={epochs}",
                 f"hydra.sweep.dir={work / 'optuna'}"], work)

        with tensorboard(sweep, runs=10) as server, browser() as driver:  # 9 jobs and the experiment
            driver.get(f"{server.url}/#timeseries")
            time.sleep(8)
            driver.save_screenshot(str(out / "tensorboard_timeseries.png"))
            driver.get(f"{server.url}/#hparams")
            time.sleep(6)
            click_text(driver, "PARALLEL COORDINATES VIEW")
            time.sleep(4)
            driver.save_screenshot(str(out / "tensorboard_hparams.png"))

        port = free_port()
        optuna = [str(Path(sys.executable).parent / "optuna-dashboard"),
                  f"sqlite:///{work / 'optuna' / 'optuna.db'}", "--port", str(port), "--host", "127.0.0.1"]
        with dashboard(optuna, f"http://127.0.0.1:{port}/api/studies") as url, browser() as driver:
            driver.get(url.replace("/api/studies", "/dashboard/studies/1"))
            time.sleep(8)
            driver.save_screenshot(str(out / "optuna_dashboard.png"))
    print(f"wrote terminal.png, tensorboard_timeseries.png, tensorboard_hparams.png and optuna_dashboard.png "
          f"into {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
