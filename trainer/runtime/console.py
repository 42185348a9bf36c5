"""What the console shows: log lines that never share a row with the progress bar.

Hydra's console handler (configs/config.yaml `hydra.job_logging`) is `TqdmHandler`: each line goes
through `tqdm.write`, which clears the live bar, prints the line, and draws the bar again below it,
so a terminal shows one clean line per epoch above one bar. `ConsoleFormatter` gives those lines a
short `HH:MM:SS` prefix on a terminal and Hydra's full `[time][logger][LEVEL] - ` prefix in a file
or a pipe, where tqdm shows no bar at all (its `disable=None`).
"""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

FULL = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's own console format
SHORT = "%(asctime)s %(message)s"


class TqdmHandler(logging.StreamHandler):
    """A StreamHandler that writes through `tqdm.write`, around any live progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS message` on a terminal (warnings and errors say so), Hydra's format elsewhere."""

    def __init__(self, stream: object = None) -> None:
        stream = sys.stdout if stream is None else stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        super().__init__(SHORT if self.tty else FULL, datefmt="%H:%M:%S" if self.tty else None)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.tty and record.levelno >= logging.WARNING:
            stamp, _, message = text.partition(" ")
            return f"{stamp} {record.levelname.lower()}: {message}"
        return text
