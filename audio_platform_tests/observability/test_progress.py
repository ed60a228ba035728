"""Progress lines: their wording, how often they are written, and the CLI's display of a drop."""

from __future__ import annotations

import io
import logging

from audio_platform.observability.progress import (
    PROGRESS_LOGGER,
    PROGRESS_MESSAGE,
    DropProgress,
    ProgressDisplay,
    ProgressReporter,
    StageProgress,
    format_bar,
    format_duration,
    listen_to_stages,
    progress_line,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_durations_and_bars_read_naturally() -> None:
    durations = [format_duration(s) for s in (0, 42.4, 60, 185, 7620)]
    assert durations == ["0 s", "42 s", "1 min 00 s", "3 min 05 s", "2 h 07 min"]
    assert format_bar(0.25, width=8) == "[##......]"
    assert format_bar(1.5, width=4) == "[####]" and format_bar(0.0, width=4) == "[....]"


def test_stage_message_has_count_share_speed_and_eta() -> None:
    running = StageProgress("ASR", "files", done=120, total=300, elapsed_s=40.0, audio_s=1400.0)
    assert running.message() == "ASR 120/300 files (40%), 35.0× RT, ETA 1 min 00 s"
    finished = StageProgress("ASR", "files", done=300, total=300, elapsed_s=100.0, audio_s=3500.0)
    assert finished.message() == "ASR 300/300 files (100%), 35.0× RT, done in 1 min 40 s"
    # No audio measured, nothing done yet: neither speed nor an ETA is invented.
    assert StageProgress("ingest", "files", 0, 10, 5.0, 0.0).message() == "ingest 0/10 files (0%)"


def test_reporter_logs_each_quarter_and_nothing_in_between() -> None:
    clock, lines = FakeClock(), []
    reporter = ProgressReporter("VAD", 100, lines.append, clock=clock)
    for _ in range(100):
        clock.now += 0.5
        reporter.advance(audio_s=10.0)
    assert [line.split(" files")[0] for line in lines] == ["VAD 25/100", "VAD 50/100", "VAD 75/100", "VAD 100/100"]
    assert lines[-1] == "VAD 100/100 files (100%), 20.0× RT, done in 50 s"


def test_reporter_logs_a_slow_stage_at_least_every_interval() -> None:
    clock, lines = FakeClock(), []
    reporter = ProgressReporter("ASR", 10, lines.append, every_fraction=0.5, every_s=30.0, clock=clock)
    for _ in range(10):
        clock.now += 10.0
        reporter.advance()
    # 30 s without a line (3 done), half way (5), 30 s again (8), the end (10).
    assert [line.split(" files")[0] for line in lines] == ["ASR 3/10", "ASR 5/10", "ASR 8/10", "ASR 10/10"]


def test_reporter_counts_seconds_and_ends_even_a_rounding_error_short_of_the_total() -> None:
    clock, lines = FakeClock(), []
    reporter = ProgressReporter("ASR", 100.0, lines.append, unit="s of speech", clock=clock)
    for _ in range(1000):
        clock.now += 0.01
        reporter.advance(0.1, audio_s=0.1)
    assert reporter.done < 100.0  # a thousand float 0.1s
    assert lines[1] == "ASR 50/100 s of speech (50%), 10.0× RT, ETA 5 s"
    assert lines[-1] == "ASR 100/100 s of speech (100%), 10.0× RT, done in 10 s"


def test_progress_line_for_a_drop() -> None:
    drop = DropProgress(shards_done=3, shards_total=8, files_done=1500, files_total=4000)
    stage = StageProgress("ASR", "files", 120, 300, 40.0, 1400.0)
    line = progress_line(drop, stage, elapsed_s=250.0, bar=True)
    assert line == (
        "[########............] 3/8 shards, 1500/4000 files, 4 min 10 s elapsed, ETA 6 min 57 s"
        " | ASR 120/300 files (40%), 35.0× RT, ETA 1 min 00 s"
    )
    done = DropProgress(8, 8, 4000, 4000, failed_shards=1)
    finished = progress_line(done, stage, elapsed_s=600.0, bar=False)
    assert finished == "8/8 shards, 4000/4000 files, 10 min 00 s elapsed, 1 failed"


def test_display_without_a_terminal_writes_throttled_lines() -> None:
    clock, stream = FakeClock(), io.StringIO()
    display = ProgressDisplay(stream, tty=False, line_interval_s=10.0, clock=clock)
    display.drop(DropProgress(0, 2, 0, 20))
    for second in range(1, 26):  # stage updates every second: a line every 10 s at most
        clock.now = float(second)
        display.stage(StageProgress("VAD", "files", second % 10, 10, float(second), 0.0))
    display.drop(DropProgress(1, 2, 10, 20))  # a finished shard always gets its line
    display.close()
    lines = stream.getvalue().splitlines()
    assert all(line.startswith("progress: ") for line in lines)
    assert [line.split(", ")[0] for line in lines] == ["progress: 0/2 shards"] * 3 + ["progress: 1/2 shards"]
    assert "| VAD 0/10 files" in lines[1] and "| VAD" not in lines[3]


def test_display_on_a_terminal_redraws_one_line() -> None:
    clock, stream = FakeClock(), io.StringIO()
    display = ProgressDisplay(stream, tty=True, width=200, redraw_interval_s=0.1, clock=clock)
    display.drop(DropProgress(0, 1, 0, 5))
    display.stage(StageProgress("ingest", "files", 1, 5, 0.0, 0.0))  # too soon after the last redraw
    clock.now = 0.5
    display.stage(StageProgress("ingest", "files", 2, 5, 0.5, 0.0))
    display.close()
    output = stream.getvalue()
    assert output.count("\r") == 2 and output.endswith("\n") and output.count("\n") == 1
    assert "ingest 1/5" not in output
    assert "[....................] 0/1 shards" in output and "ingest 2/5 files (40%)" in output
    narrow = io.StringIO()
    ProgressDisplay(narrow, tty=True, width=23, clock=FakeClock()).drop(DropProgress(0, 1, 0, 5))
    assert narrow.getvalue() == "\r[....................]\x1b[K"


def test_stage_updates_reach_a_listener_only_while_it_listens() -> None:
    heard: list[StageProgress] = []
    level_before = PROGRESS_LOGGER.level
    with listen_to_stages(heard.append):
        reporter = ProgressReporter("ingest", 3, lambda _: None)
        reporter.advance()
        reporter.advance()
    reporter.advance()
    assert [update.done for update in heard] == [1, 2]
    assert PROGRESS_LOGGER.level == level_before and not PROGRESS_LOGGER.isEnabledFor(logging.DEBUG)


def test_a_note_is_written_above_the_bar_which_is_then_redrawn() -> None:
    stream = io.StringIO()
    display = ProgressDisplay(stream, tty=True, width=200, clock=lambda: 0.0)
    display.drop(DropProgress(0, 2, 0, 10))
    line = StageProgress("ASR", "s of speech", 10.0, 30.0, 5.0, 10.0).message()
    display.note(line)
    before, note, after = stream.getvalue().partition(f"\r\x1b[Kprogress: {line}\n")
    assert note and "0/2 shards" in before and "0/2 shards" in after
    # The lines a CLI picks out of a followed run's log are the ones StageProgress writes.
    assert PROGRESS_MESSAGE.match(line) and not PROGRESS_MESSAGE.match("vad_segments: 12 files read")
