import os

import numpy as np
import pytest
import soundfile as sf

from audio_platform.audio import inventory
from audio_platform.audio.inventory import (
    DUPLICATE,
    OK,
    QUARANTINE_CATEGORIES,
    QUARANTINED,
    claimant_for,
    inventory_file,
    quarantine_category,
)
from audio_platform.audio.pcm_cache import PcmCache
from audio_platform.storage.content_index import ContentIndex
from audio_platform.storage.drops import storable_path


@pytest.fixture
def env(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    index = ContentIndex(tmp_path / "index")
    cache = PcmCache(tmp_path / "cache")

    def run(name, shard="s-0000", **kwargs):
        path = drop / name
        return inventory_file(path, name, drop, claimant_for(shard, str(path)), index.claim, cache, **kwargs)

    return drop, cache, run


def _tone(path, seconds=1.0, rate=22050, channels=2):
    t = np.arange(int(seconds * rate)) / rate
    data = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.stack([data] * channels, axis=1), rate, subtype="PCM_16")


def test_ok_file_is_probed_decoded_once_and_cached(env):
    drop, cache, run = env
    _tone(drop / "a.wav")
    record = run("a.wav")
    assert record.status == OK and record.reason is None
    assert (record.format, record.sample_rate, record.channels) == ("wav", 22050, 2)
    assert record.duration_s == pytest.approx(1.0, abs=0.01)
    assert cache.has(record.file_id) and cache.samples(record.file_id) == pytest.approx(16000, abs=10)
    again = run("a.wav")
    assert again == record, "re-running the same shard must give the same row"


def test_same_content_elsewhere_is_a_duplicate_of_the_owner(env):
    drop, _, run = env
    _tone(drop / "a.wav")
    (drop / "b.wav").write_bytes((drop / "a.wav").read_bytes())
    first = run("a.wav")
    second = run("b.wav", shard="s-0001")
    assert second.status == DUPLICATE and second.file_id == first.file_id
    assert second.duplicate_of == str(drop / "a.wav") and "same content as" in second.reason


@pytest.mark.parametrize(
    ("name", "content", "reason_start"),
    [
        ("empty.wav", b"", "empty file"),
        ("text.wav", b"hello, this is not audio at all\n" * 20, "not audio"),
        ("random.flac", bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8)), "not audio"),
    ],
)
def test_bad_content_is_quarantined_with_a_reason(env, name, content, reason_start):
    drop, _, run = env
    (drop / name).write_bytes(content)
    record = run(name)
    assert record.status == QUARANTINED
    assert record.reason.startswith(reason_start), record.reason
    assert record.file_id is not None and record.bytes == len(content)


def test_too_long_file_is_quarantined(env):
    drop, cache, run = env
    _tone(drop / "long.wav", seconds=3.0, channels=1)
    record = run("long.wav", max_duration_s=2.0)
    assert record.status == QUARANTINED and "maximum" in record.reason
    assert not cache.has(record.file_id)


def test_symlink_outside_the_drop_is_refused(env, tmp_path):
    drop, _, run = env
    outside = tmp_path / "secret.wav"
    _tone(outside)
    os.symlink(outside, drop / "link.wav")
    record = run("link.wav")
    assert record.status == QUARANTINED and "outside the drop root" in record.reason


def test_vanished_file_is_quarantined(env):
    _, _, run = env
    assert run("gone.wav").reason == "file vanished before it could be read"


def test_unreadable_file_is_quarantined(env):
    drop, _, run = env
    _tone(drop / "locked.wav")
    os.chmod(drop / "locked.wav", 0)
    try:
        if os.access(drop / "locked.wav", os.R_OK):
            pytest.skip("running as a user that ignores file permissions (root)")
        assert run("locked.wav").reason == "unreadable: permission denied"
    finally:
        os.chmod(drop / "locked.wav", 0o644)


def test_every_empty_file_is_reported_empty_not_duplicate(env):
    drop, _, run = env
    (drop / "a.wav").write_bytes(b"")
    (drop / "b.wav").write_bytes(b"")
    assert [run(name).reason for name in ("a.wav", "b.wav")] == ["empty file (0 bytes)"] * 2


def test_special_files_say_what_they_are(env):
    drop, _, run = env
    os.mkfifo(drop / "pipe.wav")
    (drop / "folder").mkdir()
    os.symlink(drop / "folder", drop / "folder_link")
    assert run("pipe.wav").reason == "not a regular file: a named pipe"
    assert run("folder_link").reason == "not a regular file: a directory"


def test_broken_symlink(env):
    drop, _, run = env
    os.symlink(drop / "missing.wav", drop / "link.wav")
    record = run("link.wav")
    assert record.status == QUARANTINED and record.reason == "broken symlink: its target does not exist"


def test_symlink_loop(env):
    drop, _, run = env
    os.symlink("b.wav", drop / "a.wav")
    os.symlink("a.wav", drop / "b.wav")
    assert run("a.wav").reason == "symlink loop: the path never resolves to a file"


def test_usable_file_unlike_its_header_is_ok_with_a_note(env):
    drop, _, run = env
    _tone(drop / "cut.wav", seconds=1.0, rate=16000, channels=1)
    (drop / "cut.wav").write_bytes((drop / "cut.wav").read_bytes()[: 44 + 2 * 4000])
    record = run("cut.wav")
    assert record.status == OK and record.duration_s == pytest.approx(0.25)
    assert record.reason == "truncated: WAV header declares 16000 frames, the file holds 4000"


def _tamper_after_hashing(monkeypatch, action):
    """Run ``action(path)`` right after the inventory hashes a file: a deterministic stand-in for
    a producer that rewrites or deletes the file while it is being read."""
    real_hash = inventory.content_hash

    def hash_then_tamper(path):
        digest = real_hash(path)
        action(path)
        return digest

    monkeypatch.setattr(inventory, "content_hash", hash_then_tamper)


def test_file_changed_while_read_is_quarantined_and_not_cached(env, monkeypatch):
    drop, cache, run = env
    _tone(drop / "a.wav")

    def append(path):
        with path.open("ab") as handle:
            handle.write(bytes(4410))

    _tamper_after_hashing(monkeypatch, append)
    record = run("a.wav")
    assert record.status == QUARANTINED and record.reason == "file changed while it was being processed; re-drop it"
    # The decoded audio is of the new bytes, not of the content the file_id names.
    assert not cache.has(record.file_id)


def test_file_deleted_while_read_is_quarantined_as_deleted(env, monkeypatch):
    drop, _, run = env
    _tone(drop / "a.wav")
    _tamper_after_hashing(monkeypatch, lambda path: path.unlink())
    record = run("a.wav")
    assert record.status == QUARANTINED and record.reason == "file was deleted while it was being processed"
    assert record.file_id is not None


def test_cached_audio_survives_a_change_it_did_not_come_from(env, monkeypatch):
    drop, cache, run = env
    _tone(drop / "a.wav")
    first = run("a.wav")
    _tamper_after_hashing(monkeypatch, lambda path: os.utime(path, ns=(0, 0)))
    assert run("a.wav").reason == "file changed while it was being processed; re-drop it"
    assert cache.has(first.file_id), "audio cached by an earlier, consistent run must stay"


def test_symlink_swapped_after_the_safety_check_cannot_redirect_the_read(env, tmp_path, monkeypatch):
    drop, _, run = env
    _tone(drop / "real.wav", seconds=1.0)
    (drop / "link.wav").symlink_to(drop / "real.wav")
    outside = tmp_path / "outside.wav"
    _tone(outside, seconds=2.0)

    def retarget(path):
        (drop / "link.wav").unlink()
        (drop / "link.wav").symlink_to(outside)

    _tamper_after_hashing(monkeypatch, retarget)
    record = run("link.wav")
    # Read through the path resolved at check time: the checked file's audio, never the outside one.
    assert record.status == OK and record.duration_s == pytest.approx(1.0, abs=0.01)


def test_folder_swapped_for_a_symlink_mid_read_is_quarantined_and_not_cached(env, tmp_path, monkeypatch):
    drop, cache, run = env
    (drop / "sub").mkdir()
    _tone(drop / "sub" / "a.wav", seconds=1.0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _tone(elsewhere / "a.wav", seconds=1.0, rate=16000)

    def swap_folder(path):
        (drop / "sub").rename(drop / "sub-old")
        (drop / "sub").symlink_to(elsewhere, target_is_directory=True)

    _tamper_after_hashing(monkeypatch, swap_folder)
    record = run("sub/a.wav")
    assert record.status == QUARANTINED
    assert record.reason.startswith("file was replaced while it was being processed")
    assert not cache.has(record.file_id), "audio read from outside the drop must not be kept"


def test_name_that_is_not_utf8(env):
    drop, _, run = env
    (drop / os.fsdecode(b"bad\xff.wav")).write_bytes(b"RIFF")
    stored = storable_path(os.fsdecode(b"bad\xff.wav"))
    assert stored == "bad\\xff.wav"
    record = run(stored)
    assert record.status == QUARANTINED
    assert record.reason == "file name is not valid UTF-8 (shown with \\x escapes); rename it"


# Reason texts as the inventory and the probe write them (docs/bad_inputs.md), one or more per category.
REASON_CATEGORIES = [
    ("empty file (0 bytes)", "empty"),
    ("not audio: unrecognized content (starts with a8 e5 01)", "not_audio"),
    ("not audio: truncated ID3 tag", "not_audio"),
    ("no audio samples: WAV header declares 0 frames but 32000 bytes that are not WAV chunks follow", "no_samples"),
    ("longer than the configured maximum of 14400 s", "too_long"),
    ("truncated FLAC stream", "truncated"),
    ("FLAC stream ends early: decoded 100 of 16000 frames", "truncated"),
    ("unsupported codec: WAV format tag 0x0055", "unsupported"),
    ("unsupported sample rate: 2000 Hz (supported 4000-384000 Hz)", "unsupported"),
    ("file changed while it was being processed; re-drop it", "changed"),
    ("file vanished before it could be read", "changed"),
    ("file was replaced while it was being processed (path now names another file); re-drop it", "changed"),
    ("path resolves outside the drop root (/etc/passwd); refusing to read it", "unsafe_path"),
    ("not a regular file: a named pipe", "unsafe_path"),
    ("hidden file (name starts with '.'): not processed; rename it to use it", "hidden"),
    ("unreadable: permission denied", "unreadable"),
    ("unreadable Ogg file: Supported file format but file is malformed.", "corrupt"),
    ("contains NaN/Inf samples", "corrupt"),
    ("malformed SPHERE header: no sample_rate", "corrupt"),
    ("something new", "other"),
]


@pytest.mark.parametrize(("reason", "category"), REASON_CATEGORIES)
def test_quarantine_reasons_fall_in_stable_categories(reason, category):
    assert quarantine_category(reason) == category


def test_every_category_is_reachable():
    assert {category for _, category in REASON_CATEGORIES} == set(QUARANTINE_CATEGORIES)


def test_hidden_files_and_removed_files_are_accounted_for(tmp_path):
    from audio_platform.audio.inventory import removed_record

    hidden = tmp_path / ".swap.wav"
    hidden.write_bytes(b"RIFF")
    record = inventory_file(hidden, ".swap.wav", tmp_path, "me", lambda h, c: c, None)  # type: ignore[arg-type]
    assert record.status == "quarantined" and quarantine_category(record.reason) == "hidden"
    last_row = {"file_id": "abc", "bytes": 4, "status": "ok", "shard": "s"}
    gone = removed_record(last_row, "/d/a.wav", "a.wav", "2026-12-06")
    assert (gone.status, gone.file_id, gone.bytes) == ("removed", "abc", 4) and "2026-12-06" in gone.reason
    assert removed_record(None, "/d/b.wav", "b.wav", "t").file_id is None


def test_a_file_moved_to_another_shard_of_its_drop_takes_its_claim_over(tmp_path):
    # An earlier version's layout could put the same file in another shard of the same drop.
    drop = tmp_path / "drop"
    drop.mkdir()
    _tone(drop / "c.wav")
    index, cache = ContentIndex(tmp_path / "index"), PcmCache(tmp_path / "cache")
    path = drop / "c.wav"

    def run(shard, release):
        return inventory_file(path, "c.wav", drop, claimant_for(shard, str(path)), index.claim, cache, None, release)

    assert run("d-abc123-0001", index.release).status == OK
    assert run("d-abc123-0000", None).status == DUPLICATE  # without release: the old behaviour
    assert run("d-abc123-0000", index.release).status == OK
    assert run("other-def456-0000", index.release).status == DUPLICATE  # another drop: a real duplicate
