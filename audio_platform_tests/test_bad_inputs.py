"""Every kind of bad input through the real pipeline (issue 5, "nothing lost, nothing crashes").

One drop holds all of them plus two good speech files, in a single shard, and is processed once
(module fixture) by ``process_drop`` on a real Dagster instance: a crash on any input would fail
the shard the good files share. Each input then gets one test of its ``audio_files`` row (status
and reason); inputs whose handling goes further (segments, flags, the cache) get their own test.
Everything is generated here (speech by espeak-ng); no audio is committed. The policy behind
each outcome is the table in docs/bad_inputs.md.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from audio_platform import runs
from audio_platform.audio import inventory
from audio_platform.audio.pcm_cache import PcmCache
from audio_platform.audio.tts import Utterance, synthesize_in_fresh_process
from audio_platform.definitions import build_definitions
from audio_platform.defs.resources import PlatformStorage
from audio_platform.runs import DropRunReport, prepare_instance, process_drop
from audio_platform.settings import Settings
from audio_platform.storage.drops import iter_drop_files, storable_path
from audio_platform.storage.warehouse import query
from audio_platform_tests.conftest import TWO_ASR_THREADS

pytestmark = pytest.mark.e2e

AUDIO_PLATFORM = Path(sys.executable).with_name("audio-platform")

MAX_DURATION_S = 20.0
NON_UTF8_NAME = os.fsdecode(b"names/bad\xffbyte.wav")
# Hidden entries are not inputs (upload tools write partial files as dot-files).
HIDDEN = ("names/..wav", "names/.partial.wav")


# ------------------------------------------------------------------------------ generators


def tone(freq: float, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    """(frames, 1) sine at 0.3 of full scale; each input gets its own frequency so that no two
    of them are byte-identical (that would make them duplicates)."""
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t))[:, None].astype(np.float32)


SENTENCES = (
    "Six people waited at the stop until the light turned green.",
    "The quick brown fox jumps over the lazy dog.",
    "Green lights are for going.",
    "Sample rates do not matter.",
)


def synthesize(texts: tuple[str, ...]) -> dict[str, tuple[np.ndarray, int]]:
    """espeak-ng speech for each text, made in a fresh process: espeak-ng's output depends on
    what its process said before, and these files must not change with the tests run first."""
    spoken = synthesize_in_fresh_process([Utterance(text, "en-us") for text in texts])
    return dict(zip(texts, spoken, strict=True))


def speech(spoken: tuple[np.ndarray, int], rate: int = 16000) -> np.ndarray:
    """The speech with 0.5 s of silence either side, at ``rate``, mono float32."""
    audio, native = spoken
    audio = resample_poly(audio, rate, native).astype(np.float32) if native != rate else audio
    pad = np.zeros(rate // 2, np.float32)
    return np.concatenate([pad, audio, pad])


def wav_bytes_with_data_size(audio: np.ndarray, rate: int, data_size: int) -> bytes:
    """A PCM-16 WAV of ``audio`` whose 'data' chunk header claims ``data_size`` bytes."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype="PCM_16")
    data = bytearray(buffer.getvalue())
    struct.pack_into("<I", data, data.index(b"data") + 4, data_size)
    return bytes(data)


@dataclass(frozen=True)
class Expected:
    status: str
    reason: str | None  # the start of the reason; None: no reason at all


EXPECTED: dict[str, Expected] = {
    "good/speech_a.wav": Expected("ok", None),
    "good/speech_b.flac": Expected("ok", None),
    "empty.wav": Expected("quarantined", "empty file (0 bytes)"),
    "empty_too.wav": Expected("quarantined", "empty file (0 bytes)"),
    "truncated.wav": Expected("ok", "truncated: WAV header declares 16000 frames, the file holds 6000"),
    "truncated.flac": Expected("quarantined", "truncated FLAC stream"),
    "flac_named.mp3": Expected("ok", None),
    "random_bytes.wav": Expected("quarantined", "not audio: unrecognized content (starts with "),
    "text.wav": Expected("quarantined", "not audio: looks like text"),
    "header_overstates.wav": Expected("ok", "truncated: WAV header declares 500000000 frames, the file holds 16000"),
    "header_understates.wav": Expected("ok", "WAV header declares 100 frames but 31800 bytes that are not WAV chunks"),
    "header_says_empty.wav": Expected("quarantined", "no audio samples: WAV header declares 0 frames but 32000 bytes"),
    "nan.wav": Expected("quarantined", "contains NaN/Inf samples"),
    "inf.wav": Expected("quarantined", "contains NaN/Inf samples"),
    "zero_samples.wav": Expected("quarantined", "no audio samples"),
    "one_sample.wav": Expected("ok", None),
    "eight_channels.wav": Expected("ok", None),
    "rate_2khz.wav": Expected("quarantined", "unsupported sample rate: 2000 Hz (supported 4000-384000 Hz)"),
    "rate_192khz.wav": Expected("ok", None),
    "silence.wav": Expected("ok", None),
    "clipped.wav": Expected("ok", None),
    "dc_offset.wav": Expected("ok", None),
    "too_long.wav": Expected("quarantined", f"longer than the configured maximum of {MAX_DURATION_S:g} s"),
    "vanishes.wav": Expected("quarantined", "file vanished before it could be read"),
    "changes_while_read.wav": Expected("quarantined", "file changed while it was being processed; re-drop it"),
    "deleted_while_read.wav": Expected("quarantined", "file was deleted while it was being processed"),
    "link_outside.wav": Expected("quarantined", "path resolves outside the drop root"),
    "linked_dir": Expected("quarantined", "path resolves outside the drop root"),
    "link_inside.wav": Expected("duplicate", "same content as "),
    "broken_link.wav": Expected("quarantined", "broken symlink: its target does not exist"),
    "loop_a.wav": Expected("quarantined", "symlink loop: the path never resolves to a file"),
    "loop_b.wav": Expected("quarantined", "symlink loop: the path never resolves to a file"),
    "fifo.wav": Expected("quarantined", "not a regular file: a named pipe"),
    "wav_holding_mp3.wav": Expected("quarantined", "unsupported codec: WAV format tag 0x0055"),
    "names/with space.wav": Expected("ok", None),
    "names/ünïcødé 日本.wav": Expected("ok", None),
    "names/new\nline.wav": Expected("ok", None),
    "names/a..b.wav": Expected("ok", None),
    # Hidden files (editor swap files, in-flight copies) are never processed but always accounted for.
    **{rel: Expected("quarantined", "hidden file (name starts with '.')") for rel in HIDDEN},
    NON_UTF8_NAME: Expected("quarantined", "file name is not valid UTF-8"),
    "zz_copies/speech_a again.wav": Expected("duplicate", "same content as "),
    "zz_copies/text again.wav": Expected("duplicate", "same content as "),
}
# Inputs the fixture deletes or rewrites on purpose: not part of the "inputs are only read" check.
TAMPERED = {"vanishes.wav", "changes_while_read.wav", "deleted_while_read.wav"}


def build_drop(root: Path) -> Path:
    drop = root / "bad_drop"
    outside = root / "outside"
    for folder in (drop / "good", drop / "names", drop / "zz_copies", outside):
        folder.mkdir(parents=True)

    def wav(rel: str, audio: np.ndarray, rate: int = 16000, **kwargs: str) -> None:
        # Through a Python file object: soundfile cannot encode a non-UTF-8 name itself.
        with (drop / rel).open("wb") as handle:
            sf.write(handle, audio, rate, format="WAV", **kwargs)

    said = synthesize(SENTENCES)
    sf.write(drop / "good/speech_a.wav", speech(said[SENTENCES[0]]), 16000)
    sf.write(drop / "good/speech_b.flac", speech(said[SENTENCES[1]]), 16000)
    (drop / "empty.wav").write_bytes(b"")
    (drop / "empty_too.wav").write_bytes(b"")
    wav("truncated.wav", tone(300), subtype="PCM_16")
    (drop / "truncated.wav").write_bytes((drop / "truncated.wav").read_bytes()[: 44 + 2 * 6000])
    sf.write(drop / "truncated.flac", tone(310, 2.0), 16000, format="FLAC")
    (drop / "truncated.flac").write_bytes((drop / "truncated.flac").read_bytes()[:3000])
    sf.write(drop / "flac_named.mp3", tone(320), 16000, format="FLAC")
    (drop / "random_bytes.wav").write_bytes(np.random.default_rng(5).bytes(8192))
    (drop / "text.wav").write_text("This is a README, not a recording.\n" * 20, encoding="utf-8")
    (drop / "header_overstates.wav").write_bytes(wav_bytes_with_data_size(tone(330), 16000, 10**9))
    (drop / "header_understates.wav").write_bytes(wav_bytes_with_data_size(tone(340), 16000, 200))
    (drop / "header_says_empty.wav").write_bytes(wav_bytes_with_data_size(tone(350), 16000, 0))
    for name, bad in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        audio = tone(360)
        audio[8000] = bad
        wav(name, audio, subtype="FLOAT")
    wav("zero_samples.wav", np.zeros((0, 1), np.float32), subtype="PCM_16")
    wav("one_sample.wav", np.full((1, 1), 0.25, np.float32), subtype="PCM_16")
    # The same sentence on 8 channels at different gains: averaging must keep it intelligible.
    voice = speech(said[SENTENCES[2]], 22050)
    wav("eight_channels.wav", voice[:, None] * np.linspace(0.2, 0.9, 8, dtype=np.float32), 22050, subtype="PCM_16")
    wav("rate_2khz.wav", tone(200, rate=2000), 2000, subtype="PCM_16")
    wav("rate_192khz.wav", speech(said[SENTENCES[3]], 192000), 192000, subtype="PCM_24")
    wav("silence.wav", np.zeros((3 * 16000, 1), np.float32), subtype="PCM_16")
    loud = speech(said[SENTENCES[0]])
    wav("clipped.wav", np.clip(loud * 30.0, -1.0, 1.0), subtype="PCM_16")
    wav("dc_offset.wav", loud * 0.5 + 0.4, subtype="PCM_16")
    wav("too_long.wav", tone(370, MAX_DURATION_S + 5, rate=8000), 8000, subtype="PCM_16")
    for name, freq in (("vanishes.wav", 380), ("changes_while_read.wav", 390), ("deleted_while_read.wav", 400)):
        wav(name, tone(freq), subtype="PCM_16")
    sf.write(outside / "secret.wav", tone(410), 16000)
    os.symlink(outside / "secret.wav", drop / "link_outside.wav")
    os.symlink(outside, drop / "linked_dir")
    os.symlink(drop / "good/speech_a.wav", drop / "link_inside.wav")
    os.symlink(drop / "no_such_file.wav", drop / "broken_link.wav")
    os.symlink("loop_b.wav", drop / "loop_a.wav")
    os.symlink("loop_a.wav", drop / "loop_b.wav")
    os.mkfifo(drop / "fifo.wav")
    wav("wav_holding_mp3.wav", tone(420), subtype="PCM_16")
    mp3_in_wav = bytearray((drop / "wav_holding_mp3.wav").read_bytes())
    mp3_in_wav[20:22] = struct.pack("<H", 0x0055)  # format tag: MPEG layer 3
    (drop / "wav_holding_mp3.wav").write_bytes(bytes(mp3_in_wav))
    names = ["names/with space.wav", "names/ünïcødé 日本.wav", "names/new\nline.wav", "names/a..b.wav", NON_UTF8_NAME]
    for freq, rel in enumerate([*names, *HIDDEN], start=430):
        wav(rel, tone(freq), subtype="PCM_16")
    shutil.copyfile(drop / "good/speech_a.wav", drop / "zz_copies/speech_a again.wav")
    shutil.copyfile(drop / "text.wav", drop / "zz_copies/text again.wav")
    return drop


# --------------------------------------------------------------------------------- the run


@dataclass
class Run:
    settings: Settings
    drop: Path
    report: DropRunReport
    rows: dict[str, dict[str, object]]  # audio_files by rel_path (as stored)
    untouched_before: dict[str, str]

    def row(self, rel: str) -> dict[str, object]:
        return self.rows[storable_path(rel)]

    def sql(self, sql: str) -> pl.DataFrame:
        return query(self.settings.warehouse_path, sql)

    def segments_of(self, rel: str) -> pl.DataFrame:
        file_id = self.row(rel)["file_id"]
        return self.sql(
            "SELECT s.*, d.selected, d.rejection_reason, t.text FROM segments s "
            "JOIN curation_decisions d USING (segment_id) JOIN transcripts t USING (segment_id) "
            f"WHERE s.file_id = '{file_id}' ORDER BY s.start_s"
        )


def fingerprints(drop: Path) -> dict[str, str]:
    """sha256 of every regular input file (symlinks and pipes are not read here)."""
    return {
        rel: hashlib.sha256((drop / rel).read_bytes()).hexdigest()
        for rel in iter_drop_files(drop)
        if rel not in TAMPERED and (drop / rel).is_file() and not (drop / rel).is_symlink()
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("bad_inputs")
    drop = build_drop(root)
    before = fingerprints(drop)
    settings = Settings(
        home=root / "home", shard_size=64, max_file_duration_s=MAX_DURATION_S, resource_config=TWO_ASR_THREADS
    )
    real_register, real_hash = runs.register_drop, inventory.content_hash

    def register_then_delete(*args: object, **kwargs: object) -> object:
        # The file is listed in the shard's plan, then disappears before the shard runs.
        plan = real_register(*args, **kwargs)  # type: ignore[arg-type]
        (drop / "vanishes.wav").unlink()
        return plan

    def hash_then_tamper(path: Path) -> str:
        # Deterministic stand-ins for a producer still writing, or deleting, a file mid-read:
        # the change lands after the inventory has hashed the file and before it decodes it.
        digest = real_hash(path)
        if path.name == "changes_while_read.wav":
            with path.open("ab") as handle:
                handle.write(bytes(3200))
        elif path.name == "deleted_while_read.wav":
            path.unlink()
        return digest

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runs, "register_drop", register_then_delete)
        patch.setattr(inventory, "content_hash", hash_then_tamper)
        report = process_drop(settings, build_definitions(settings), drop, prepare_instance(settings))
    files = query(settings.warehouse_path, "SELECT * FROM audio_files")
    return Run(settings, drop, report, {str(r["rel_path"]): r for r in files.iter_rows(named=True)}, before)


# ---------------------------------------------------------------------- the shard as a whole


def test_the_shard_completes_with_every_check_passing(run: Run) -> None:
    assert len(run.report.plan.shards) == 1
    assert run.report.failed_shards == []
    assert run.report.failed_checks == [] and run.report.check_warnings == []


def test_every_input_has_exactly_one_row(run: Run) -> None:
    listed = sorted(storable_path(rel) for rel in iter_drop_files(run.drop))
    assert sorted(run.rows) == sorted(storable_path(rel) for rel in EXPECTED)
    # Vanished files are no longer listed, but were inputs when the drop was planned.
    assert listed == sorted(
        storable_path(rel) for rel in EXPECTED if rel not in {"vanishes.wav", "deleted_while_read.wav"}
    )
    assert run.sql("SELECT count(*) AS n FROM audio_files")["n"][0] == len(EXPECTED)


def test_hidden_files_are_accounted_for_but_not_read(run: Run) -> None:
    assert all(run.rows[rel]["status"] == "quarantined" and run.rows[rel]["bytes"] is None for rel in HIDDEN)
    assert all((run.drop / rel).is_file() for rel in HIDDEN)


def test_good_files_are_processed_and_curated(run: Run) -> None:
    """A good file's speech reaches the curated set: its own segments, or, where the drop holds an
    earlier copy of it (dc_offset.wav says speech_a's sentence with a DC offset), that copy's."""
    curated = set(run.sql("SELECT segment_id FROM curated_segments")["segment_id"])
    for rel in ("good/speech_a.wav", "good/speech_b.flac"):
        segments = run.segments_of(rel)
        assert segments.height >= 1, rel
        copies = run.sql(
            "SELECT n.segment_id, n.near_duplicate_of FROM near_duplicates n JOIN segments s USING (segment_id) "
            f"WHERE s.file_id = '{run.row(rel)['file_id']}'"
        )
        kept = set(segments.filter(pl.col("selected"))["segment_id"]) | set(
            copies.filter(pl.col("near_duplicate_of").is_in(list(curated)))["segment_id"]
        )
        assert kept, (rel, segments["rejection_reason"].to_list())
    copy_of_a = run.sql(
        "SELECT a.rel_path FROM near_duplicates n JOIN segments o ON o.segment_id = n.near_duplicate_of "
        "JOIN audio_files a ON a.file_id = o.file_id AND a.status = 'ok' "
        "JOIN segments s ON s.segment_id = n.segment_id "
        f"WHERE s.file_id = '{run.row('good/speech_a.wav')['file_id']}'"
    )
    assert set(copy_of_a["rel_path"]) <= {"dc_offset.wav", "clipped.wav"}
    for table in ("curated_segments", "curation_decisions", "segment_scores", "transcripts", "words"):
        assert run.sql(f"SELECT count(*) AS n FROM {table}")["n"][0] > 0, table


def test_inputs_are_only_read(run: Run) -> None:
    assert fingerprints(run.drop) == run.untouched_before


# ------------------------------------------------------------------------- one row per input


@pytest.mark.parametrize("rel", list(EXPECTED), ids=lambda rel: ascii(rel).strip("'"))
def test_row(run: Run, rel: str) -> None:
    row, expected = run.row(rel), EXPECTED[rel]
    assert row["status"] == expected.status, row
    if expected.reason is None:
        assert row["reason"] is None, row
    else:
        assert isinstance(row["reason"], str) and row["reason"].startswith(expected.reason), row
    assert row["source_path"] == storable_path(str(run.drop / rel))


# ------------------------------------------------------------------- inputs with more to check


def test_wrong_extension_is_read_by_content(run: Run) -> None:
    assert run.row("flac_named.mp3")["format"] == "flac"


def test_lying_headers_keep_the_audio_that_is_there(run: Run) -> None:
    assert run.row("truncated.wav")["duration_s"] == pytest.approx(6000 / 16000)
    assert run.row("header_overstates.wav")["duration_s"] == pytest.approx(1.0)
    assert run.row("header_understates.wav")["duration_s"] == pytest.approx(100 / 16000)


def test_one_sample_is_ok_with_no_segments(run: Run) -> None:
    assert run.row("one_sample.wav")["duration_s"] == pytest.approx(1 / 16000)
    assert run.segments_of("one_sample.wav").height == 0


def test_silence_is_ok_with_no_segments(run: Run) -> None:
    assert run.row("silence.wav")["duration_s"] == pytest.approx(3.0)
    assert run.segments_of("silence.wav").height == 0


def test_many_channels_are_averaged(run: Run) -> None:
    row = run.row("eight_channels.wav")
    assert (row["channels"], row["sample_rate"]) == (8, 22050)
    segments = run.segments_of("eight_channels.wav")
    assert segments.height >= 1 and "green" in " ".join(segments["text"].to_list()).lower()


def test_very_high_sample_rate_is_resampled(run: Run) -> None:
    assert run.row("rate_192khz.wav")["sample_rate"] == 192000
    segments = run.segments_of("rate_192khz.wav")
    assert segments.height >= 1 and "sample" in " ".join(segments["text"].to_list()).lower()


def test_clipped_speech_is_rejected_for_clipping(run: Run) -> None:
    segments = run.segments_of("clipped.wav")
    assert segments.height >= 1
    assert (segments["clipping_ratio"] > 0.01).all()
    assert not segments["selected"].any()
    assert any(reason.startswith("clipping_ratio") for reason in segments["rejection_reason"].to_list())


def test_dc_offset_is_measured_not_fatal(run: Run) -> None:
    segments = run.segments_of("dc_offset.wav")
    assert segments.height >= 1
    assert segments["dc_offset"].to_numpy() == pytest.approx(0.4, abs=0.02)


def test_a_file_changed_mid_read_leaves_nothing_in_the_cache(run: Run) -> None:
    row = run.row("changes_while_read.wav")
    assert isinstance(row["file_id"], str)
    assert not PcmCache(run.settings.audio_cache).has(row["file_id"])


def test_nothing_outside_the_drop_is_read(run: Run) -> None:
    for rel in ("link_outside.wav", "linked_dir"):
        assert (run.row(rel)["file_id"], run.row(rel)["bytes"]) == (None, None)  # refused before hashing
    secret = hashlib.sha256((run.drop.parent / "outside" / "secret.wav").read_bytes()).hexdigest()
    storage = PlatformStorage(home=str(run.settings.home))
    assert not storage.pcm_cache.has(secret)
    assert storage.content_index.owner(secret) is None


def test_unusual_names_survive_the_round_trip(run: Run) -> None:
    for rel in ("names/with space.wav", "names/ünïcødé 日本.wav", "names/new\nline.wav", "names/a..b.wav"):
        assert run.row(rel)["source_path"] == str(run.drop / rel)
    assert run.row(NON_UTF8_NAME)["rel_path"] == "names/bad\\xffbyte.wav"


def test_duplicates_point_at_the_first_copy(run: Run) -> None:
    assert run.row("zz_copies/speech_a again.wav")["duplicate_of"] == str(run.drop / "good/speech_a.wav")
    assert run.row("link_inside.wav")["duplicate_of"] == str(run.drop / "good/speech_a.wav")
    # Identical garbage is a duplicate too; its owner's row says why that content is quarantined.
    assert run.row("zz_copies/text again.wav")["duplicate_of"] == str(run.drop / "text.wav")


# ----------------------------------------------------------------------- unreadable files

# linux/prctl.h and linux/capability.h
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _without_permission_override() -> None:
    """Runs in the child before exec: remove root's power to ignore file modes from the capability
    bounding set, so the exec'd pipeline is refused a mode-000 file as any other user would be."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_file(tmp_path: Path) -> None:
    """Its own small drop: ``audio-platform process`` runs as a process that honours file modes.
    Root (as in CI containers) reads any file, so for root the child gives up CAP_DAC_OVERRIDE
    and CAP_DAC_READ_SEARCH; a switch to another uid is not possible here, because the Python
    interpreter lives under /root (mode 700)."""
    drop, home = tmp_path / "drop", tmp_path / "home"
    drop.mkdir()
    sf.write(drop / "locked.wav", tone(500), 16000)
    sf.write(drop / "readable.wav", tone(510), 16000)
    (drop / "locked.wav").chmod(0)
    try:
        result = subprocess.run(
            [str(AUDIO_PLATFORM), "process", str(drop)],
            env={**os.environ, "AUDIO_PLATFORM_HOME": str(home)},
            preexec_fn=_without_permission_override if os.geteuid() == 0 else None,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.SubprocessError as err:
        pytest.skip(f"cannot give up root's file-permission override here: {err}")
    finally:
        (drop / "locked.wav").chmod(0o644)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = dict(
        query(
            home / "warehouse.duckdb", "SELECT rel_path, status || ': ' || coalesce(reason, '') FROM audio_files"
        ).iter_rows()
    )
    assert rows == {"locked.wav": "quarantined: unreadable: permission denied", "readable.wav": "ok: "}
