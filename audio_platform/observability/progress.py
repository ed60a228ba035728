"""Progress of long loops (run logs) and of a whole drop (the CLI's progress display).

A stage (ingest, VAD, ASR) reports each unit of work to a :class:`ProgressReporter`, which

* writes a throttled line to the run log: at each quarter of the work, after a minute without a
  line, and at the end, so a stage adds a handful of lines whatever its size;
* hands every update to the ``audio_platform.progress`` Python logger at DEBUG level. Nobody
  listens in a run worker (the check costs one ``isEnabledFor``); the CLI, which executes runs in
  its own process, listens with :func:`listen_to_stages` to keep its progress display current.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

PROGRESS_LOGGER = logging.getLogger("audio_platform.progress")
# The lines StageProgress.message() writes into run logs ("ASR 120/300 s of speech (40%), …"):
# how a process that follows another's run (the CLI waiting on a daemon's run) picks them out.
PROGRESS_MESSAGE = re.compile(r"^\S.* \d+/\d+ .*\(\d+%\)")
BAR_WIDTH = 20


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"


def format_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``[#####...............]`` for 0.25."""
    filled = round(min(max(fraction, 0.0), 1.0) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


@dataclass(frozen=True)
class StageProgress:
    label: str  # "ASR"
    unit: str  # "files", or "s of speech" (a float sum)
    done: float
    total: float
    elapsed_s: float
    audio_s: float  # audio processed so far (0 when the stage does not measure it)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def finished(self) -> bool:
        # Seconds summed piece by piece may fall a rounding error short of their total.
        return self.done >= self.total * (1 - 1e-9)

    @property
    def speed(self) -> float | None:
        """Audio seconds processed per wall second (the real-time factor so far)."""
        return self.audio_s / self.elapsed_s if self.audio_s > 0 and self.elapsed_s > 0 else None

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far; None before the first unit is done."""
        return self.elapsed_s * (self.total - self.done) / self.done if self.done else None

    def message(self) -> str:
        """``ASR 120/300 files (40%), 35× RT, ETA 50 s``; seconds are shown whole."""
        parts = [f"{self.label} {self.done:.0f}/{self.total:.0f} {self.unit} ({self.fraction:.0%})"]
        if self.speed is not None:
            parts.append(f"{self.speed:.1f}× RT")
        if self.finished:
            parts.append(f"done in {format_duration(self.elapsed_s)}")
        elif self.eta_s is not None:
            parts.append(f"ETA {format_duration(self.eta_s)}")
        return ", ".join(parts)


class ProgressReporter:
    """Counts the units of a loop and reports them (see the module docstring)."""

    def __init__(
        self,
        label: str,
        total: float,
        log: Callable[[str], None],
        *,
        unit: str = "files",
        every_fraction: float = 0.25,
        every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self._log, self._every_fraction, self._every_s, self._clock = log, every_fraction, every_s, clock
        self._started = self._last_logged = clock()
        self._milestone = 0  # how many every_fraction steps have been logged
        self.done = 0.0
        self.audio_s = 0.0

    def advance(self, count: float = 1, audio_s: float = 0.0) -> StageProgress:
        self.done += count
        self.audio_s += audio_s
        now = self._clock()
        update = StageProgress(self.label, self.unit, self.done, self.total, now - self._started, self.audio_s)
        if PROGRESS_LOGGER.isEnabledFor(logging.DEBUG):
            PROGRESS_LOGGER.debug("%s", update.message(), extra={"progress": update})
        milestone = int(update.fraction / self._every_fraction + 1e-9)
        if update.finished or milestone > self._milestone or now - self._last_logged >= self._every_s:
            self._log(update.message())
            self._last_logged, self._milestone = now, milestone
        return update


@dataclass(frozen=True)
class DropProgress:
    """Where processing a drop stands, reported before the first shard and after each one."""

    shards_done: int
    shards_total: int
    files_done: int
    files_total: int
    failed_shards: int = 0

    @property
    def fraction(self) -> float:
        return self.files_done / self.files_total if self.files_total else float(self.shards_done >= self.shards_total)


def progress_line(drop: DropProgress, stage: StageProgress | None, elapsed_s: float, *, bar: bool) -> str:
    """``[####....] 3/8 shards, 1500/4000 files, 4 min 10 s elapsed, ETA 7 min 00 s | ASR 120/300 files (40%), …``.

    The drop's ETA extrapolates from the files of finished shards; until one finishes, the
    current stage's own ETA is the estimate to read.
    """
    parts = [
        f"{drop.shards_done}/{drop.shards_total} shards",
        f"{drop.files_done}/{drop.files_total} files",
        f"{format_duration(elapsed_s)} elapsed",
    ]
    if drop.failed_shards:
        parts.append(f"{drop.failed_shards} failed")
    if 0 < drop.files_done < drop.files_total:
        parts.append(f"ETA {format_duration(elapsed_s * (drop.files_total - drop.files_done) / drop.files_done)}")
    line = ", ".join(parts)
    if bar:
        line = f"{format_bar(drop.fraction)} {line}"
    if stage is not None and drop.shards_done < drop.shards_total:
        line += f" | {stage.message()}"
    return line


class ProgressDisplay:
    """Shows a drop's progress on ``stream``: on a terminal, a bar redrawn in place (``\\r``) at most
    every ``redraw_interval_s``; elsewhere (logs, CI) a plain line at most every ``line_interval_s``.
    A finished shard is always shown."""

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool,
        line_interval_s: float = 10.0,
        redraw_interval_s: float = 0.1,
        width: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``width``: of the terminal line (default: the terminal's, read at each redraw)."""
        self._stream, self._tty, self._width, self._clock = stream, tty, width, clock
        self._interval = redraw_interval_s if tty else line_interval_s
        self._started = clock()
        self._last_shown = -float("inf")
        self._drop: DropProgress | None = None
        self._stage: StageProgress | None = None
        self._drawn = False

    def drop(self, progress: DropProgress) -> None:
        self._drop, self._stage = progress, None
        self._show(force=True)

    def stage(self, progress: StageProgress) -> None:
        self._stage = progress
        self._show(force=False)

    def note(self, line: str) -> None:
        """A line of its own (e.g. a progress line of a run a daemon executes), above the bar."""
        if self._tty and self._drawn:
            self._stream.write("\r\x1b[K")
            self._drawn = False
        self._stream.write(f"progress: {line}\n")
        self._stream.flush()
        if self._tty:
            self._show(force=True)

    def close(self) -> None:
        """Ends the bar's line so that later output starts on a fresh one."""
        if self._tty and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False

    def _show(self, *, force: bool) -> None:
        now = self._clock()
        if self._drop is None or (not force and now - self._last_shown < self._interval):
            return
        self._last_shown = now
        line = progress_line(self._drop, self._stage, now - self._started, bar=self._tty)
        if self._tty:
            # One column short of the edge: a full line would wrap on some terminals.
            width = (self._width or shutil.get_terminal_size().columns) - 1
            # \x1b[K clears what a longer previous line left to the right.
            self._stream.write("\r" + line[:width] + "\x1b[K")
            self._drawn = True
        else:
            self._stream.write(f"progress: {line}\n")
        self._stream.flush()


class _StageHandler(logging.Handler):
    def __init__(self, callback: Callable[[StageProgress], None]) -> None:
        super().__init__(logging.DEBUG)
        self._callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        progress = getattr(record, "progress", None)
        if isinstance(progress, StageProgress):
            self._callback(progress)


@contextmanager
def listen_to_stages(callback: Callable[[StageProgress], None]) -> Iterator[None]:
    """Calls ``callback`` with every stage update made in this process while the block runs."""
    handler = _StageHandler(callback)
    previous_level, previous_propagate = PROGRESS_LOGGER.level, PROGRESS_LOGGER.propagate
    PROGRESS_LOGGER.addHandler(handler)
    PROGRESS_LOGGER.setLevel(logging.DEBUG)
    # Per-unit DEBUG records are for the callback only, not for whatever handlers the root has.
    PROGRESS_LOGGER.propagate = False
    try:
        yield
    finally:
        PROGRESS_LOGGER.removeHandler(handler)
        # setLevel, not assignment: it also resets the isEnabledFor cache.
        PROGRESS_LOGGER.setLevel(previous_level)
        PROGRESS_LOGGER.propagate = previous_propagate
