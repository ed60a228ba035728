"""Packing: laying VAD speech segments into windows of at most 30 s for Whisper.

Whisper's encoder always sees 30 s of audio, so decoding short segments one at a time spends most
of the compute on padding. Segments are laid back to back into windows of at most ``window_s``
(one file per window by default), ``gap_s`` of digital silence apart, each with some of its file's
own audio around it as context for the decoder; a segment longer than a window is first cut at a
quiet frame. A window keeps the offset map from window time back to each segment's file time.
Nothing here loads or runs a model (numpy only): decoding the windows is ``audio.asr``'s job.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from audio_platform.audio.dsp import SAMPLE_RATE

# Long segments are cut at the quietest 20 ms frame within this many seconds before the limit.
_CUT_SEARCH_S = 5.0
_CUT_FRAME = SAMPLE_RATE // 50
# Context reaches into a pause towards another segment only when the pause is this long (as
# faster-whisper's VAD joins speech across shorter ones): between close neighbours it holds the
# edges of the next utterance, which changed how Whisper wrote spelled letters ("I-T-D-K-M" ->
# "IT DKM"; +25 errors on the benchmark's long file), while around isolated segments it helps.
_CONTEXT_MIN_PAUSE_S = 2.0


@dataclass(frozen=True)
class Piece:
    """A span of one input segment placed in a window (a long segment yields several pieces).

    ``pad_before_s``/``pad_after_s`` of the file's own audio are rendered around the span (context
    for the decoder at the VAD cut); words stay mapped to the span itself."""

    item: int
    segment: int
    file_start_s: float
    file_end_s: float
    window_start_s: float
    pad_before_s: float = 0.0
    pad_after_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.file_end_s - self.file_start_s

    @property
    def window_end_s(self) -> float:
        return self.window_start_s + self.duration_s

    def to_file_time(self, window_t: float) -> float:
        """Map a time in the window to file time, clamped to this piece."""
        t = self.file_start_s + (window_t - self.window_start_s)
        return min(max(t, self.file_start_s), self.file_end_s)


@dataclass(frozen=True)
class Window:
    """Pieces laid out in one window, in order, ``gap_s`` apart; the offset map of the window."""

    pieces: tuple[Piece, ...]

    @property
    def duration_s(self) -> float:
        return self.pieces[-1].window_end_s + self.pieces[-1].pad_after_s

    def piece_index(self, word_start: float, previous: int | None = None) -> int:
        """Index of the piece that a word starting at ``word_start`` (window time) belongs to.

        The aligner often stretches a word's end over the pause after it, while its start is
        usually close, so the start decides: the piece containing it. A start in a gap is
        ambiguous: the DTW aligner drifts most at utterance edges, so a segment's last word can
        land past its piece's end. ``previous`` is the piece of the word before it in the same
        decoder segment (Whisper ends a segment at a pause, so a word that continues one
        belongs to the utterance before the gap); without it, the nearer piece wins.
        """
        i = bisect.bisect_right([p.window_start_s for p in self.pieces], word_start) - 1
        if i < 0:
            return 0
        if i + 1 < len(self.pieces) and word_start > self.pieces[i].window_end_s:
            if previous == i:
                return i
            after_gap = self.pieces[i + 1].window_start_s - word_start
            if after_gap < word_start - self.pieces[i].window_end_s:
                return i + 1
        return i


Span = tuple[int, int, float, float]  # (item, segment, file_start_s, file_end_s)
Context = tuple[float, float]  # seconds of the file's audio rendered before and after a span
NO_CONTEXT: Context = (0.0, 0.0)


def pack_pieces(
    spans: Sequence[Span],
    window_s: float,
    gap_s: float,
    across_items: bool = True,
    context: Callable[[Span], Context] | None = None,
) -> list[Window]:
    """Pack ``(item, segment, file_start_s, file_end_s)`` spans, in the given order, into windows.

    Next-fit keeps neighbouring speech together (useful context for the decoder) and lays each
    span out ``gap_s`` after the previous one. Every span must already be at most ``window_s``.
    Without ``across_items`` a window holds the spans of one item (file) only. ``context(span)``
    gives the audio rendered before and after the span (shrunk to fit the window).
    """
    windows: list[Window] = []
    current: list[Piece] = []
    cursor = 0.0
    for span in spans:
        item, segment, start, end = span
        duration = end - start
        if duration > window_s + 1e-9:
            raise ValueError(f"span {start:.3f}-{end:.3f} s is longer than the {window_s} s window")
        before, after = context(span) if context else NO_CONTEXT
        spare = max(window_s - duration, 0.0)
        before = min(before, spare / 2)
        after = min(after, spare - before)
        offset = cursor + gap_s + before if current else before
        if current and (offset + duration + after > window_s or (not across_items and current[-1].item != item)):
            windows.append(Window(tuple(current)))
            current, offset = [], before
        current.append(Piece(item, segment, start, end, offset, before, after))
        cursor = offset + duration + after
    if current:
        windows.append(Window(tuple(current)))
    return windows


def split_long_segment(audio: np.ndarray, start_s: float, end_s: float, window_s: float) -> list[tuple[float, float]]:
    """Cut a segment into spans of at most ``window_s``, each cut at the quietest nearby frame.

    Cutting in the quietest 20 ms of the last few seconds before the limit avoids splitting a
    word in most speech, since there is usually a pause somewhere in that stretch.
    """
    spans: list[tuple[float, float]] = []
    while end_s - start_s > window_s:
        search_start = start_s + max(window_s - _CUT_SEARCH_S, window_s / 2)
        lo = round(search_start * SAMPLE_RATE)
        n_frames = (round((start_s + window_s) * SAMPLE_RATE) - lo) // _CUT_FRAME
        frames = audio[lo : lo + n_frames * _CUT_FRAME].reshape(n_frames, _CUT_FRAME)
        quietest = int(np.argmin(np.square(frames, dtype=np.float64).sum(axis=1)))
        cut = (lo + quietest * _CUT_FRAME + _CUT_FRAME // 2) / SAMPLE_RATE
        spans.append((start_s, cut))
        start_s = cut
    spans.append((start_s, end_s))
    return spans


def render_window(window: Window, audios: Sequence[np.ndarray]) -> np.ndarray:
    """The window's audio: each piece's samples (and context) at its offset, digital silence in the gaps."""
    out = np.zeros(round(window.duration_s * SAMPLE_RATE), dtype=np.float32)
    for p in window.pieces:
        lo = round((p.window_start_s - p.pad_before_s) * SAMPLE_RATE)
        chunk = audios[p.item][
            round((p.file_start_s - p.pad_before_s) * SAMPLE_RATE) : round((p.file_end_s + p.pad_after_s) * SAMPLE_RATE)
        ]
        chunk = chunk[: len(out) - lo]
        out[lo : lo + len(chunk)] = chunk
    return out


class SpeechContext:
    """How much of a file's own audio may surround a span: up to ``pad_s``; towards another segment
    of the file at most half the pause, and none across a pause under ``_CONTEXT_MIN_PAUSE_S``;
    none inside speech (a split or retried span)."""

    def __init__(self, speech: list[list[tuple[float, float]]], durations: list[float], pad_s: float) -> None:
        self._speech = [sorted(s) for s in speech]
        self._durations = durations
        self._pad_s = pad_s

    def pads(self, span: Span) -> Context:
        item, _, start, end = span
        if self._pad_s <= 0.0:
            return NO_CONTEXT
        eps = 1e-6
        before, after = min(self._pad_s, start), min(self._pad_s, self._durations[item] - end)
        for a, b in self._speech[item]:
            if a < start - eps and start + eps < b:  # the span starts inside speech
                before = 0.0
            if a < end - eps and end + eps < b:  # ...or ends inside it
                after = 0.0
            if b <= start + eps:
                before = min(before, _context_across(start - b))
            if a >= end - eps:
                after = min(after, _context_across(a - end))
        return max(before, 0.0), max(after, 0.0)


def _context_across(pause_s: float) -> float:
    """Context allowed into a pause between two segments of a file: half of it, none across a short one."""
    return pause_s / 2 if pause_s >= _CONTEXT_MIN_PAUSE_S else 0.0
