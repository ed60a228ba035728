"""probe_audio and content_hash: the real corpus, generated formats and bad input."""

from __future__ import annotations

import csv
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_platform.audio.probe import (
    AudioInfo,
    UnsupportedAudioError,
    content_hash,
    probe_audio,
)

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"


def manifest_rows() -> list[dict[str, str]]:
    manifest = CORPUS / "manifest.csv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


MANIFEST = manifest_rows()
needs_corpus = pytest.mark.skipif(not MANIFEST, reason="shared corpus not present")


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """A (frames, channels) float32 sine at half scale, a different phase per channel."""
    t = np.arange(round(seconds * rate)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * freq * t + c) for c in range(channels)], axis=1).astype(
        np.float32
    )


def write_sphere(
    path: Path,
    samples: np.ndarray,
    rate: int,
    *,
    byte_format: str = "01",
    fields: dict[str, str] | None = None,
) -> Path:
    """A NIST_1A file with a 1024-byte header; ``samples`` are (frames, channels) integers."""
    n_bytes = samples.dtype.itemsize
    header = {
        "sample_count": f"-i {samples.shape[0]}",
        "sample_rate": f"-i {rate}",
        "channel_count": f"-i {samples.shape[1]}",
        "sample_n_bytes": f"-i {n_bytes}",
        "sample_byte_format": f"-s{len(byte_format)} {byte_format}",
        "sample_coding": "-s3 pcm",
        **(fields or {}),
    }
    lines = "".join(f"{k} {v}\n" for k, v in header.items() if v)
    text = f"NIST_1A\n   1024\n{lines}end_head\n".encode("ascii")
    dtype = samples.dtype.newbyteorder("<" if byte_format.startswith("0") else ">")
    path.write_bytes(text.ljust(1024, b" ") + samples.astype(dtype).tobytes())
    return path


def reason_of(path: Path) -> str:
    with pytest.raises(UnsupportedAudioError) as caught:
        probe_audio(path)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


# ------------------------------------------------------------------------ real corpus

# Corpus file names are honest, so the extension tells what the content sniffing must find.
CORPUS_FORMATS = {".wav": "wav", ".flac": "flac", ".mp3": "mp3", ".opus": "ogg", ".sph": "sph"}


@needs_corpus
@pytest.mark.parametrize("row", MANIFEST, ids=lambda row: row["path"])
def test_corpus_file_matches_manifest(row: dict[str, str]) -> None:
    path = CORPUS / row["path"]
    info = probe_audio(path)
    assert info.format == CORPUS_FORMATS[path.suffix]
    assert info.sample_rate == int(row["sample_rate"])
    assert info.channels == int(row["channels"])
    assert info.duration_s == pytest.approx(float(row["duration_s"]), abs=0.05)
    assert info.duration_s == info.num_frames / info.sample_rate


@needs_corpus
@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("an4/an326-ftal-b.sph", "pcm_s16le"),
        ("whisper/jfk.flac", "flac"),
        ("silero/test.mp3", "mp3"),
        ("silero/test.opus", "opus"),
        ("ami/trn01.wav", "pcm_f32le"),
        ("ami/sample.wav", "pcm_s16le"),
    ],
)
def test_corpus_codecs(name: str, codec: str) -> None:
    assert probe_audio(CORPUS / "audio" / name).codec == codec


@needs_corpus
def test_sphere_frame_count_comes_from_the_header() -> None:
    # an326: 'sample_count -i 19200' after a 1024-byte header of 16-bit mono samples.
    assert probe_audio(CORPUS / "audio" / "an4" / "an326-ftal-b.sph").num_frames == 19200


@needs_corpus
def test_content_hash_of_corpus_file() -> None:
    path = CORPUS / "audio" / "silero" / "test.mp3"
    assert content_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ generated formats


@pytest.mark.parametrize(
    ("subtype", "codec"),
    [
        ("PCM_U8", "pcm_u8"),
        ("PCM_16", "pcm_s16le"),
        ("PCM_24", "pcm_s24le"),
        ("PCM_32", "pcm_s32le"),
        ("FLOAT", "pcm_f32le"),
        ("DOUBLE", "pcm_f64le"),
    ],
)
def test_wav_sample_formats(tmp_path: Path, subtype: str, codec: str) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(0.5, 22050, 2), 22050, subtype=subtype)
    info = probe_audio(path)
    assert (info.format, info.codec, info.sample_rate, info.channels) == ("wav", codec, 22050, 2)
    assert info.num_frames == 11025
    assert info.duration_s == pytest.approx(0.5)


@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (11025, 3), (96000, 6), (12345, 2)])
def test_any_rate_and_channel_count(tmp_path: Path, rate: int, channels: int) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(0.25, rate, channels), rate, subtype="PCM_16")
    info = probe_audio(path)
    assert (info.sample_rate, info.channels, info.num_frames) == (rate, channels, round(0.25 * rate))


def test_wave_format_extensible(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, tone(0.2, 48000, 6), 48000, format="WAVEX", subtype="PCM_24")
    assert path.read_bytes()[20:22] == b"\xfe\xff"  # WAVE_FORMAT_EXTENSIBLE tag
    info = probe_audio(path)
    assert (info.format, info.codec, info.channels, info.num_frames) == ("wav", "pcm_s24le", 6, 9600)


def test_rf64_and_aiff(tmp_path: Path) -> None:
    sf.write(tmp_path / "r.wav", tone(0.1, 16000), 16000, format="RF64", subtype="PCM_16")
    sf.write(tmp_path / "a.aiff", tone(0.1, 16000), 16000, format="AIFF", subtype="PCM_16")
    rf64, aiff = probe_audio(tmp_path / "r.wav"), probe_audio(tmp_path / "a.aiff")
    assert (rf64.format, rf64.codec, rf64.num_frames) == ("wav", "pcm_s16le", 1600)
    assert (aiff.format, aiff.codec, aiff.num_frames) == ("aiff", "pcm_s16be", 1600)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
def test_flac(tmp_path: Path, subtype: str) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, tone(1.0, 44100, 2), 44100, subtype=subtype)
    info = probe_audio(path)
    assert (info.format, info.codec, info.channels, info.num_frames) == ("flac", "flac", 2, 44100)


def drop_flac_length(path: Path) -> None:
    """Zero STREAMINFO's 36-bit total-samples field, as streaming encoders leave it."""
    data = bytearray(path.read_bytes())
    data[21] &= 0xF0
    data[22:26] = bytes(4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
def test_flac_without_length_in_streaminfo(tmp_path: Path, subtype: str) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, tone(0.7, 16000), 16000, subtype=subtype)
    drop_flac_length(path)
    info = probe_audio(path)
    assert (info.format, info.codec, info.num_frames) == ("flac", "flac", 11200)


def test_flac_after_id3_tag(tmp_path: Path) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, tone(0.5, 16000), 16000, subtype="PCM_16")
    path.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x14" + bytes(20) + path.read_bytes())
    info = probe_audio(path)
    assert (info.format, info.num_frames) == ("flac", 8000)


@pytest.mark.parametrize(("subtype", "codec"), [("VORBIS", "vorbis"), ("OPUS", "opus")])
def test_ogg(tmp_path: Path, subtype: str, codec: str) -> None:
    path = tmp_path / "a.ogg"
    sf.write(path, tone(1.0, 16000, 2), 16000, format="OGG", subtype=subtype)
    info = probe_audio(path)
    assert (info.format, info.codec, info.sample_rate, info.channels) == ("ogg", codec, 16000, 2)
    assert info.num_frames == 16000


def test_mp3_without_id3_tag(tmp_path: Path) -> None:
    path = tmp_path / "a.mp3"
    sf.write(path, tone(1.0, 44100, 2), 44100, format="MP3", subtype="MPEG_LAYER_III")
    assert path.read_bytes()[:2] == b"\xff\xfb"  # starts straight with an MPEG frame
    info = probe_audio(path)
    # Encoder delay and padding are trimmed, so the count is exact.
    assert (info.format, info.codec, info.channels, info.num_frames) == ("mp3", "mp3", 2, 44100)


def test_mp3_whose_sample_rate_changes(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.mp3", tone(1.0, 44100), 44100, format="MP3")
    sf.write(tmp_path / "b.mp3", tone(1.0, 22050), 22050, format="MP3")
    joined = tmp_path / "joined.mp3"
    joined.write_bytes((tmp_path / "a.mp3").read_bytes() + (tmp_path / "b.mp3").read_bytes())
    assert reason_of(joined) == "sample rate changes mid-stream"


def test_format_comes_from_content_not_extension(tmp_path: Path) -> None:
    sf.write(tmp_path / "flac.wav", tone(0.3, 16000), 16000, format="FLAC")
    sf.write(tmp_path / "wav.mp3", tone(0.3, 16000), 16000, format="WAV")
    sf.write(tmp_path / "ogg.txt", tone(0.3, 16000), 16000, format="OGG", subtype="VORBIS")
    sf.write(tmp_path / "mp3.flac", tone(0.3, 16000), 16000, format="MP3")
    write_sphere(tmp_path / "sph.wav", np.zeros((100, 1), np.int16), 16000)
    (tmp_path / "noext").write_bytes((tmp_path / "flac.wav").read_bytes())
    found = {p.name: probe_audio(p).format for p in tmp_path.iterdir()}
    assert found == {
        "flac.wav": "flac",
        "wav.mp3": "wav",
        "ogg.txt": "ogg",
        "mp3.flac": "mp3",
        "sph.wav": "sph",
        "noext": "flac",
    }


def test_content_hash_streams_multi_block_files(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(np.random.default_rng(0).bytes(3 * (1 << 20) + 17))
    assert content_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- bad input


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"")
    assert reason_of(tmp_path / "a.wav") == "empty file (0 bytes)"


def test_random_bytes(tmp_path: Path) -> None:
    data = b"\x00\x01\x02\x03" + np.random.default_rng(1).bytes(5000)
    (tmp_path / "a.wav").write_bytes(data)
    assert reason_of(tmp_path / "a.wav") == (
        f"not audio: unrecognized content (starts with {data[:8].hex(' ')})"
    )


@pytest.mark.parametrize(
    "text", ["hello, this is not a recording\n", '{"a": 1}', "naïve café\n" * 200, "\ufeffBOM first\n"]
)
def test_text_named_wav(tmp_path: Path, text: str) -> None:
    (tmp_path / "a.wav").write_text(text, encoding="utf-8")
    assert reason_of(tmp_path / "a.wav") == "not audio: looks like text"


def test_id3_tag_without_audio(tmp_path: Path) -> None:
    (tmp_path / "a.mp3").write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x05" + b"\x00" * 5 + b"junk" * 10)
    assert reason_of(tmp_path / "a.mp3") == "not audio: ID3 tag without MPEG audio after it"


def test_zero_sample_wav(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros((0, 1), np.float32), 16000, subtype="PCM_16")
    assert reason_of(tmp_path / "a.wav") == "no audio samples"


def test_truncated_wav_reports_the_frames_present(tmp_path: Path) -> None:
    # The header still claims 16000 frames; the decodable part is what counts, and the note says so.
    path = tmp_path / "a.wav"
    sf.write(path, tone(1.0, 16000), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: 44 + 2 * 6000 + 1])
    info = probe_audio(path)
    assert info.num_frames == 6000
    assert info.note == "truncated: WAV header declares 16000 frames, the file holds 6000"


def set_wav_data_size(path: Path, size: int) -> None:
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.index(b"data") + 4, size)
    path.write_bytes(bytes(data))


def test_wav_header_understating_its_length(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(1.0, 16000, 2), 16000, subtype="PCM_16")
    set_wav_data_size(path, 400)  # 100 stereo frames of 64000 bytes
    info = probe_audio(path)
    assert info.num_frames == 100
    assert info.note == (
        "WAV header declares 100 frames but 63600 bytes that are not WAV chunks follow them; "
        "the header may understate the length"
    )


def test_wav_header_declaring_no_data(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(0.5, 16000), 16000, subtype="PCM_16")
    set_wav_data_size(path, 0)
    assert reason_of(path) == (
        "no audio samples: WAV header declares 0 frames but 16000 bytes that are not WAV chunks "
        "follow them; the header may understate the length"
    )


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT", "PCM_U8"])
def test_well_formed_wav_has_no_note(tmp_path: Path, subtype: str) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(0.3, 16000, 3), 16000, subtype=subtype)
    assert probe_audio(path).note is None


def test_chunks_after_the_data_are_not_a_length_problem(tmp_path: Path) -> None:
    # An odd-sized data chunk with its pad byte, then a LIST chunk whose own pad byte is missing.
    path = tmp_path / "a.wav"
    sf.write(path, tone(0.1, 16000), 16000, subtype="PCM_U8")  # 1600 bytes of data
    data = bytearray(path.read_bytes()[:-1])  # 1599 bytes: odd
    struct.pack_into("<I", data, data.index(b"data") + 4, 1599)
    data += b"\x00" + b"LIST" + struct.pack("<I", 5) + b"INFOx"
    path.write_bytes(bytes(data))
    info = probe_audio(path)
    assert (info.num_frames, info.note) == (1599, None)


def test_streaming_wav_of_unknown_length_has_no_note(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(0.5, 16000), 16000, subtype="PCM_16")
    set_wav_data_size(path, 0xFFFFFFFF)
    info = probe_audio(path)
    assert (info.num_frames, info.note) == (8000, None)


def test_truncated_flac(tmp_path: Path) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, tone(2.0, 16000), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert reason_of(path) == "truncated FLAC stream"


def test_wav_with_unsupported_codec(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(0.1, 16000), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[20:22] = struct.pack("<H", 0x0055)  # MPEG Layer 3 inside WAV
    path.write_bytes(bytes(data))
    assert reason_of(path) == "unsupported codec: WAV format tag 0x0055"


def test_ogg_with_unsupported_codec(tmp_path: Path) -> None:
    # One Ogg page (27-byte header, 1-entry segment table) holding a Speex header packet.
    packet = b"Speex   1.2" + bytes(69)
    page = b"OggS\x00\x02" + bytes(20) + bytes([1, len(packet)]) + packet
    (tmp_path / "a.ogg").write_bytes(page)
    assert reason_of(tmp_path / "a.ogg") == "unsupported codec: Ogg/Speex"


def test_sample_rate_out_of_range(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros((100, 1), np.float32), 1000, subtype="PCM_16")
    assert reason_of(tmp_path / "a.wav").startswith("unsupported sample rate: 1000 Hz")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert reason_of(tmp_path / "nope.wav").startswith("cannot read file: No such file")
    assert reason_of(tmp_path).startswith("cannot read file: Is a directory")


# ------------------------------------------------------------------------------ SPHERE


@pytest.mark.parametrize(
    ("byte_format", "dtype", "codec"),
    [("01", np.int16, "pcm_s16le"), ("10", np.int16, "pcm_s16be"), ("3210", np.int32, "pcm_s32be")],
)
def test_sphere_header(tmp_path: Path, byte_format: str, dtype: type, codec: str) -> None:
    samples: np.ndarray = np.zeros((800, 2), dtype)
    info = probe_audio(write_sphere(tmp_path / "a.sph", samples, 8000, byte_format=byte_format))
    assert info == AudioInfo("sph", codec, 8000, 2, 800, 0.1)


def test_sphere_counts_only_frames_present(tmp_path: Path) -> None:
    path = write_sphere(tmp_path / "a.sph", np.zeros((1000, 1), np.int16), 16000)
    path.write_bytes(path.read_bytes()[: 1024 + 2 * 300 + 1])  # header still says 1000
    info = probe_audio(path)
    assert info.num_frames == 300
    assert info.note == "truncated: SPHERE header declares 1000 frames, the file holds 300"


def test_sphere_sample_count_limits_trailing_bytes(tmp_path: Path) -> None:
    samples: np.ndarray = np.zeros((1000, 1), np.int16)
    path = write_sphere(tmp_path / "a.sph", samples, 16000, fields={"sample_count": "-i 640"})
    assert probe_audio(path).num_frames == 640


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (
            {"sample_coding": "-s26 pcm,embedded-shorten-v2.00"},
            "unsupported codec: SPHERE sample_coding 'pcm,embedded-shorten-v2.00' "
            "(shorten-compressed: expand with sph2pipe first)",
        ),
        ({"sample_coding": "-s4 ulaw"}, "unsupported codec: SPHERE sample_coding 'ulaw'"),
        ({"sample_rate": ""}, "malformed SPHERE header: no sample_rate"),
        ({"sample_byte_format": ""}, "malformed SPHERE header: no sample_byte_format"),
        (
            {"sample_byte_format": "-s2 10", "sample_n_bytes": "-i 4"},
            "unsupported SPHERE sample_byte_format '10' for 4-byte samples",
        ),
        ({"sample_rate": "-s5 16000"}, "malformed SPHERE header: sample_rate is not an integer"),
        ({"sample_rate": "-i sixteen"}, "malformed SPHERE header line: 'sample_rate -i sixteen'"),
        ({"sample_n_bytes": "-i 3"}, "unsupported SPHERE sample_n_bytes: 3"),
    ],
)
def test_sphere_rejections(tmp_path: Path, fields: dict[str, str], reason: str) -> None:
    path = write_sphere(tmp_path / "a.sph", np.zeros((100, 1), np.int16), 16000, fields=fields)
    assert reason_of(path) == reason


def test_sphere_header_without_end(tmp_path: Path) -> None:
    (tmp_path / "a.sph").write_bytes(b"NIST_1A\n   1024\nsample_rate -i 16000\n".ljust(1024, b" "))
    assert reason_of(tmp_path / "a.sph") == "malformed SPHERE header: no end_head"


def test_sphere_bad_header_size(tmp_path: Path) -> None:
    (tmp_path / "a.sph").write_bytes(b"NIST_1A\n   lots\n".ljust(1024, b" "))
    assert reason_of(tmp_path / "a.sph") == "malformed SPHERE header: bad header size"


def _pcm_wav(path: Path, bits: int, block_align: int, channels: int = 1, frames: int = 1600) -> Path:
    data = bytes(range(256)) * (frames * block_align // 256 + 1)
    data = data[: frames * block_align]
    fmt = struct.pack("<HHIIHH", 1, channels, 16000, 16000 * block_align, block_align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_pcm_wav_whose_frame_size_contradicts_its_sample_size(tmp_path: Path) -> None:
    # 7-bit samples in 2-byte frames: libsndfile would read 8-bit samples at twice the duration.
    assert reason_of(_pcm_wav(tmp_path / "a.wav", bits=7, block_align=2)).startswith("malformed WAV header")
    padded = probe_audio(_pcm_wav(tmp_path / "b.wav", bits=7, block_align=1))
    assert padded.num_frames == 1600 and "7 bits per sample; read as 8-bit" in (padded.note or "")
    twelve = probe_audio(_pcm_wav(tmp_path / "c.wav", bits=12, block_align=2))
    assert twelve.num_frames == 1600 and "12 bits per sample; read as 16-bit" in (twelve.note or "")


def test_more_channels_than_wav_is_read_with(tmp_path: Path) -> None:
    path = _pcm_wav(tmp_path / "many.wav", bits=16, block_align=2 * 1100, channels=1100, frames=4)
    assert reason_of(path) == "unsupported channel count: 1100 (WAV is read with at most 1024)"


def test_a_path_of_more_than_1024_bytes_is_read(tmp_path: Path) -> None:
    folder = tmp_path
    for part in ("d" * 250, "e" * 250, "f" * 250, "g" * 250):
        folder = folder / part
    folder.mkdir(parents=True)
    for name, subtype in (("x" * 100 + ".wav", "PCM_16"), ("y" * 100 + ".flac", "PCM_16")):
        path = folder / name
        with open(path, "wb") as handle:  # soundfile itself cannot open such a path by name
            sf.write(handle, tone(0.1, 16000), 16000, subtype=subtype, format=path.suffix[1:].upper())
        assert len(str(path).encode()) > 1024
        assert probe_audio(path).num_frames == 1600
