"""Identify audio by its content and read its header facts.

The container is decided from the leading bytes, never from the file extension, and each
container goes to the reader that handles it best:

- WAV / RF64, AIFF, FLAC, Ogg (Vorbis, Opus): libsndfile via ``soundfile``. Its bundled
  libopus decodes Opus at the stream's original rate (e.g. 16 kHz), where FFmpeg always
  gives 48 kHz.
- MPEG audio (MP3): PyAV/FFmpeg, which trims the encoder delay and padding (gapless info).
  MP3 headers do not state an exact length, so frames are counted by decoding.
- FLAC whose STREAMINFO leaves the length unknown (streamed encoders): PyAV, because
  libsndfile cannot step through such a file.
- NIST SPHERE: a small parser of our own for uncompressed PCM.

The readers here are shared with ``decode.py``; each yields float32 ``(frames, channels)``
chunks of bounded size.
"""

from __future__ import annotations

import hashlib
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import av
import numpy as np
import soundfile as sf

MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 384000
# Samples (frames x channels) per read: keeps every chunk near 1 MiB of float32 whatever
# the channel count.
_CHUNK_SAMPLES = 1 << 18
_SNIFF_BYTES = 4096
_HASH_BLOCK = 1 << 20
# soundfile reports SF_COUNT_MAX frames when a FLAC header leaves the length unknown.
_UNKNOWN_FRAMES = 1 << 62


class UnsupportedAudioError(Exception):
    """The input cannot be used as audio; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    format: str
    codec: str
    sample_rate: int
    channels: int
    num_frames: int
    duration_s: float
    # Set when the file is usable but not as its header describes it (e.g. cut off): the
    # inventory keeps such a file and shows this text as its reason.
    note: str | None = None


def content_hash(path: Path) -> str:
    """sha256 hex digest of the file's bytes, read in 1 MiB blocks. Raises OSError."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def probe_audio(path: Path) -> AudioInfo:
    """Format, codec, rate, channels and exact frame count, without decoding where the
    container states the length. Raises only UnsupportedAudioError."""
    with unsupported_on_failure(), open_audio(Path(path)) as reader:
        num_frames = reader.header_frames
        if num_frames is None:
            num_frames = sum(len(chunk) for chunk in reader.chunks())
        if num_frames == 0:
            raise UnsupportedAudioError(f"no audio samples: {reader.note}" if reader.note else "no audio samples")
        return AudioInfo(
            format=reader.format,
            codec=reader.codec,
            sample_rate=reader.sample_rate,
            channels=reader.channels,
            num_frames=num_frames,
            duration_s=num_frames / reader.sample_rate,
            note=reader.note,
        )


@contextmanager
def unsupported_on_failure() -> Iterator[None]:
    """Turn any failure into UnsupportedAudioError.

    The public functions promise callers a single exception type with a readable reason;
    decoders can fail in ways nobody listed (numpy on an absurd header, a library bug on
    fuzzed bytes), so the catch is deliberately broad. The cause stays chained.
    """
    try:
        yield
    except UnsupportedAudioError:
        raise
    except av.error.FFmpegError as err:
        raise UnsupportedAudioError(f"cannot decode: {err.strerror or err}") from err
    except OSError as err:
        raise UnsupportedAudioError(f"cannot read file: {err.strerror or err}") from err
    except MemoryError as err:
        raise UnsupportedAudioError("cannot decode: out of memory") from err
    except Exception as err:
        raise UnsupportedAudioError(f"cannot decode: {type(err).__name__}: {err}") from err


class AudioReader(ABC):
    """An open audio file: header facts plus a one-pass iterator over float32 chunks."""

    format: str
    codec: str
    sample_rate: int
    channels: int
    # Frames the file holds, or None where only decoding can tell (the PyAV routes).
    header_frames: int | None
    # Where the header and the data disagree but the data is still usable (see AudioInfo.note).
    note: str | None = None

    @abstractmethod
    def chunks(self) -> Iterator[np.ndarray]:
        """float32 arrays of shape (frames, channels), full scale at +-1."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_audio(path: Path) -> AudioReader:
    """Sniff the content and open the matching reader (use it as a context manager)."""
    with path.open("rb") as f:
        fmt = _sniff(f)
    if fmt == "sph":
        return _SphereReader(path)
    if fmt == "mp3":
        return _PyAVReader(path, "mp3")
    reader = _SoundfileReader(path, fmt)
    if reader.header_frames is None:
        reader.close()
        return _PyAVReader(path, "flac")
    return reader


def _check_layout(sample_rate: int, channels: int) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise UnsupportedAudioError(
            f"unsupported sample rate: {sample_rate} Hz (supported {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)"
        )
    if channels < 1:
        raise UnsupportedAudioError(f"invalid channel count: {channels}")


# ---------------------------------------------------------------------------- sniffing


def _sniff(f: BinaryIO) -> str:
    head = f.read(_SNIFF_BYTES)
    if not head:
        raise UnsupportedAudioError("empty file (0 bytes)")
    tag, form = head[:4], head[8:12]
    if tag in (b"RIFF", b"RF64") and form == b"WAVE":
        return "wav"
    if tag == b"FORM" and form in (b"AIFF", b"AIFC"):
        return "aiff"
    if tag == b"fLaC":
        return "flac"
    if tag == b"OggS":
        _check_ogg_codec(head)
        return "ogg"
    if head.startswith(b"NIST_1A") and head[7:8].isspace():
        return "sph"
    if head.startswith(b"ID3"):
        # An ID3v2 tag (often with cover art) can precede MP3 or FLAC data.
        f.seek(_id3v2_size(head))
        body = f.read(_SNIFF_BYTES).lstrip(b"\x00")
        if body.startswith(b"fLaC"):
            return "flac"
        if _is_mpeg_audio_header(body[:4]):
            return "mp3"
        raise UnsupportedAudioError("not audio: ID3 tag without MPEG audio after it")
    if _is_mpeg_audio_header(head[:4]):
        return "mp3"
    if _looks_like_text(head):
        raise UnsupportedAudioError("not audio: looks like text")
    raise UnsupportedAudioError(f"not audio: unrecognized content (starts with {head[:8].hex(' ')})")


def _id3v2_size(head: bytes) -> int:
    """Offset of the first byte after an ID3v2 tag (size is 4 x 7-bit 'syncsafe' bytes)."""
    if len(head) < 10:
        raise UnsupportedAudioError("not audio: truncated ID3 tag")
    size = 0
    for byte in head[6:10]:
        size = (size << 7) | (byte & 0x7F)
    footer = 10 if head[5] & 0x10 else 0
    return 10 + size + footer


def _is_mpeg_audio_header(b: bytes) -> bool:
    """An MPEG-1/2/2.5 layer I-III frame header with no reserved or 'bad' field values."""
    if len(b) < 4 or b[0] != 0xFF or (b[1] & 0xE0) != 0xE0:
        return False
    version = (b[1] >> 3) & 3
    layer = (b[1] >> 1) & 3
    bitrate_index = b[2] >> 4
    rate_index = (b[2] >> 2) & 3
    return version != 1 and layer != 0 and bitrate_index not in (0, 15) and rate_index != 3


def _check_ogg_codec(head: bytes) -> None:
    """The first Ogg page carries the codec's identification packet."""
    if len(head) < 28:
        raise UnsupportedAudioError("truncated Ogg stream")
    packet = head[27 + head[26] :]
    if packet.startswith((b"OpusHead", b"\x01vorbis")):
        return
    known = {b"\x7fFLAC": "FLAC", b"Speex": "Speex", b"\x80theora": "Theora"}
    name = next((v for k, v in known.items() if packet.startswith(k)), "unknown")
    raise UnsupportedAudioError(f"unsupported codec: Ogg/{name}")


def _looks_like_text(head: bytes) -> bool:
    sample = head[:1024]
    for cut in range(4):  # the sample may end inside a multi-byte UTF-8 character
        try:
            text = sample[: len(sample) - cut].decode("utf-8-sig")
            break
        except UnicodeDecodeError:
            continue
    else:
        return False
    return all(ch.isprintable() or ch in "\t\n\r\f" for ch in text)


# ------------------------------------------------------------------ libsndfile reader

_FORMAT_LABELS = {"wav": "WAV", "aiff": "AIFF", "flac": "FLAC", "ogg": "Ogg"}
# Endian-neutral codec names; multi-byte PCM gets 'le'/'be' from the container.
_MULTIBYTE_PCM = {
    "PCM_16": "pcm_s16",
    "PCM_24": "pcm_s24",
    "PCM_32": "pcm_s32",
    "FLOAT": "pcm_f32",
    "DOUBLE": "pcm_f64",
}
_OTHER_CODECS = {
    "PCM_U8": "pcm_u8",
    "PCM_S8": "pcm_s8",
    "ULAW": "pcm_mulaw",
    "ALAW": "pcm_alaw",
    "IMA_ADPCM": "adpcm_ima_wav",
    "MS_ADPCM": "adpcm_ms",
    "GSM610": "gsm_ms",
    "VORBIS": "vorbis",
    "OPUS": "opus",
}


class _SoundfileReader(AudioReader):
    def __init__(self, path: Path, fmt: str) -> None:
        self.format = fmt
        self._label = _FORMAT_LABELS[fmt]
        self._path = path
        # Through a Python file object: libsndfile refuses paths of 1,024 bytes or more by name.
        self._handle = path.open("rb")
        try:
            self._file = sf.SoundFile(self._handle)
        except sf.LibsndfileError as err:
            self._handle.close()
            raise UnsupportedAudioError(self._open_failure(path, err)) from err
        try:
            self._init_header()
        except BaseException:
            self.close()
            raise

    def _init_header(self) -> None:
        f = self._file
        self.sample_rate, self.channels = f.samplerate, f.channels
        _check_layout(self.sample_rate, self.channels)
        if self.format == "ogg":
            self._label = f"Ogg/{f.subtype.capitalize()}"
        if self.format == "flac":
            self.codec = "flac"
        elif f.subtype in _MULTIBYTE_PCM:
            self.codec = _MULTIBYTE_PCM[f.subtype] + ("be" if self.format == "aiff" else "le")
        else:
            self.codec = _OTHER_CODECS.get(f.subtype, f.subtype.lower())
        self.header_frames = None if f.frames >= _UNKNOWN_FRAMES else f.frames
        if self.format == "flac" and self.header_frames:
            self._check_flac_end()
        if self.format == "wav":
            notes = [_pcm_layout_note(_wav_format(self._path))]
            if self.header_frames is not None:
                notes.append(_wav_length_note(self._path, self.header_frames))
            self.note = "; ".join(note for note in notes if note) or None

    def _check_flac_end(self) -> None:
        # STREAMINFO states the length; a cut-off file still claims it. Reaching the last
        # frame is a cheap check (libsndfile bisects the frames) that the data is all there.
        try:
            self._file.seek(self._file.frames - 1)
            self._file.read(1, dtype="float32")
            self._file.seek(0)
        except sf.LibsndfileError as err:
            raise UnsupportedAudioError("truncated FLAC stream") from err

    def _open_failure(self, path: Path, err: sf.LibsndfileError) -> str:
        if self.format == "wav":
            fmt = _wav_format(path)
            if fmt is not None and fmt.tag not in _LIBSNDFILE_WAV_TAGS:
                return f"unsupported codec: WAV format tag 0x{fmt.tag:04x}"
            if fmt is not None and fmt.channels > MAX_WAV_CHANNELS:
                return f"unsupported channel count: {fmt.channels} (WAV is read with at most {MAX_WAV_CHANNELS})"
        return f"unreadable {self._label} file: {err.error_string}"

    def chunks(self) -> Iterator[np.ndarray]:
        frames_per_read = max(1, _CHUNK_SAMPLES // self.channels)
        total = 0
        while True:
            try:
                chunk = self._file.read(frames_per_read, dtype="float32", always_2d=True)
            except sf.LibsndfileError as err:
                raise UnsupportedAudioError(f"corrupt {self._label} stream: {err.error_string}") from err
            if not len(chunk):
                break
            total += len(chunk)
            yield chunk
        if self.header_frames is not None and total < self.header_frames:
            raise UnsupportedAudioError(
                f"{self._label} stream ends early: decoded {total} of {self.header_frames} frames"
            )

    def close(self) -> None:
        self._file.close()
        self._handle.close()


# libsndfile's limit on channels (SF_MAX_CHANNELS).
MAX_WAV_CHANNELS = 1024
# WAV format tags libsndfile decodes: PCM, MS ADPCM, IEEE float, A-law, mu-law, IMA ADPCM,
# GSM 6.10, WAVE_FORMAT_EXTENSIBLE (its sub-format is checked by libsndfile itself).
_LIBSNDFILE_WAV_TAGS = {0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011, 0x0031, 0xFFFE}


@dataclass(frozen=True)
class _WavFormat:
    tag: int
    channels: int
    block_align: int
    bits_per_sample: int


def _wav_format(path: Path) -> _WavFormat | None:
    """The 'fmt ' chunk (format tag, channels, block align, bits per sample), to check what
    libsndfile accepts without a word and to name the codec when it rejects a WAV."""
    with path.open("rb") as f:
        head = f.read(1 << 16)
    pos = 12
    while pos + 10 <= len(head):
        chunk_id = head[pos : pos + 4]
        (size,) = struct.unpack_from("<I", head, pos + 4)
        if chunk_id == b"fmt ":
            if pos + 24 > len(head):
                return _WavFormat(int(struct.unpack_from("<H", head, pos + 8)[0]), 0, 0, 0)
            tag, channels, _, _, block_align, bits = struct.unpack_from("<HHIIHH", head, pos + 8)
            return _WavFormat(tag, channels, block_align, bits)
        pos += 8 + size + (size & 1)
    return None


def _pcm_layout_note(fmt: _WavFormat | None) -> str | None:
    """Refuse a PCM WAV whose frame size contradicts its sample size (libsndfile would read it
    with another sample size and another duration); a note when bits are padded to whole bytes."""
    if fmt is None or fmt.tag != 0x0001 or not fmt.channels or not fmt.bits_per_sample:
        return None
    container = -(-fmt.bits_per_sample // 8)
    if fmt.block_align != fmt.channels * container:
        raise UnsupportedAudioError(
            f"malformed WAV header: block align {fmt.block_align} does not fit {fmt.channels} channel(s) of "
            f"{fmt.bits_per_sample}-bit samples ({fmt.channels * container} bytes)"
        )
    if fmt.bits_per_sample % 8:
        return f"WAV header declares {fmt.bits_per_sample} bits per sample; read as {8 * container}-bit samples"
    return None


# Format tags whose data is fixed-size frames (block_align bytes each): PCM, IEEE float, A-law,
# mu-law and WAVE_FORMAT_EXTENSIBLE (whose sub-formats libsndfile accepts are all such).
_FRAMED_WAV_TAGS = {0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE}
# Streaming writers that cannot seek back may leave the data size as 0xFFFFFFFF: "unknown".
_UNKNOWN_WAV_SIZE = 0xFFFFFFFF
_MAX_TRAILING_CHUNKS = 64


def _riff_chunks(f: BinaryIO, file_size: int) -> Iterator[tuple[bytes, int, int]]:
    """(id, offset of the body, declared body size) of each top-level chunk, as declared."""
    pos = 12
    while pos + 8 <= file_size:
        f.seek(pos)
        header = f.read(8)
        (size,) = struct.unpack("<I", header[4:])
        yield header[:4], pos + 8, size
        pos += 8 + size + (size & 1)


def _wav_length_note(path: Path, frames: int) -> str | None:
    """Say so when a RIFF/WAV header's data size disagrees with the file.

    libsndfile settles both cases silently: a data chunk larger than the file (cut off, or a
    header that overstates) yields the frames present; one followed by bytes that are not
    chunks (a header that understates, e.g. a streaming writer's size 0) yields only the
    declared frames. The frames read are still good audio, so such a file is processed, but
    its row says what happened. RF64 keeps its sizes elsewhere and is not checked.
    """
    file_size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(4) != b"RIFF":
            return None
        block_align = 0
        for chunk_id, offset, size in _riff_chunks(f, file_size):
            if chunk_id == b"fmt ":
                f.seek(offset)
                fmt = f.read(14)
                if len(fmt) < 14 or struct.unpack_from("<H", fmt)[0] not in _FRAMED_WAV_TAGS:
                    return None
                block_align = struct.unpack_from("<H", fmt, 12)[0]
            elif chunk_id == b"data":
                if not block_align or size == _UNKNOWN_WAV_SIZE:
                    return None
                declared = size // block_align
                if declared > frames:
                    return f"truncated: WAV header declares {declared} frames, the file holds {frames}"
                end = offset + size + (size & 1)
                if _only_chunks_after(f, end, file_size):
                    return None
                return (
                    f"WAV header declares {declared} frames but {file_size - end} bytes that are not "
                    "WAV chunks follow them; the header may understate the length"
                )
    return None


def _only_chunks_after(f: BinaryIO, start: int, file_size: int) -> bool:
    """Whether the bytes from ``start`` to the end parse as chunks (printable ids, sizes that fit)."""
    pos = start
    for _ in range(_MAX_TRAILING_CHUNKS):
        if pos >= file_size:  # '>': a last odd-sized chunk may lack its pad byte
            return True
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8 or not all(0x20 <= byte <= 0x7E for byte in header[:4]):
            return False
        (size,) = struct.unpack("<I", header[4:])
        if pos + 8 + size > file_size:
            return False
        pos += 8 + size + (size & 1)
    return True


# ------------------------------------------------------------------------ PyAV reader

# Scale to +-1 for the FFmpeg sample formats of the routed decoders: mp3float gives float,
# FLAC gives s16 up to 16 bits and s32 (left-aligned) above.
_AV_SAMPLE_SCALE = {"flt": 1.0, "s16": 2.0**-15, "s32": 2.0**-31}
_AV_LABELS = {"mp3": "MP3", "flac": "FLAC"}


class _PyAVReader(AudioReader):
    def __init__(self, path: Path, fmt: str) -> None:
        self.format = fmt
        self._label = _AV_LABELS[fmt]
        try:
            # The demuxer is forced to what the content sniffing found.
            self._container = av.open(str(path), format=fmt)
        except av.error.FFmpegError as err:
            raise UnsupportedAudioError(f"unreadable {self._label} file: {err.strerror or err}") from err
        try:
            self._init_header()
        except BaseException:
            self._container.close()
            raise

    def _init_header(self) -> None:
        if not self._container.streams.audio:
            raise UnsupportedAudioError(f"no audio stream in {self._label} file")
        self._stream = self._container.streams.audio[0]
        context = self._stream.codec_context
        self.codec = context.codec.canonical_name
        self.sample_rate, self.channels = context.sample_rate, context.channels
        _check_layout(self.sample_rate, self.channels)
        self.header_frames = None

    def chunks(self) -> Iterator[np.ndarray]:
        for packet in self._container.demux(self._stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                # As the ffmpeg CLI does: drop the damaged packet (a few ms) and go on,
                # rather than reject a long recording for one bad frame.
                continue
            for frame in frames:
                if frame.sample_rate != self.sample_rate:
                    raise UnsupportedAudioError("sample rate changes mid-stream")
                yield _frame_to_float(frame)

    def close(self) -> None:
        self._container.close()


def _frame_to_float(frame: av.AudioFrame) -> np.ndarray:
    scale = _AV_SAMPLE_SCALE[frame.format.name.removesuffix("p")]
    data = frame.to_ndarray()
    # Planar frames are (channels, n); packed ones are (1, n * channels) interleaved.
    data = data.T if frame.format.is_planar else data.reshape(-1, frame.layout.nb_channels)
    return (data * scale).astype(np.float32) if scale != 1.0 else data.astype(np.float32)


# ---------------------------------------------------------------------- SPHERE reader

_SPHERE_MAX_HEADER = 1 << 16


class _SphereReader(AudioReader):
    """NIST SPHERE ('NIST_1A') with uncompressed PCM samples.

    The header is ASCII: 'NIST_1A', the header size in bytes, then 'name -type value'
    lines up to 'end_head'. Samples follow the header, interleaved.
    """

    def __init__(self, path: Path) -> None:
        self.format = "sph"
        self._file = path.open("rb")
        try:
            self._init_header()
        except BaseException:
            self._file.close()
            raise

    def _init_header(self) -> None:
        fields, header_size = _parse_sphere_header(self._file)
        coding = str(fields.get("sample_coding", "pcm"))
        if coding != "pcm":
            hint = " (shorten-compressed: expand with sph2pipe first)" if "shorten" in coding else ""
            raise UnsupportedAudioError(f"unsupported codec: SPHERE sample_coding '{coding}'{hint}")
        sample_bytes = _sphere_int(fields, "sample_n_bytes", 2)
        if sample_bytes not in (2, 4):
            raise UnsupportedAudioError(f"unsupported SPHERE sample_n_bytes: {sample_bytes}")
        if "sample_rate" not in fields:
            raise UnsupportedAudioError("malformed SPHERE header: no sample_rate")
        self.sample_rate = _sphere_int(fields, "sample_rate", 0)
        self.channels = _sphere_int(fields, "channel_count", 1)
        _check_layout(self.sample_rate, self.channels)

        # '01' / '0123' = little-endian, '10' / '3210' = big-endian.
        if "sample_byte_format" not in fields:
            raise UnsupportedAudioError("malformed SPHERE header: no sample_byte_format")
        byte_format = str(fields["sample_byte_format"])
        ascending = "".join(str(i) for i in range(sample_bytes))
        if byte_format not in (ascending, ascending[::-1]):
            raise UnsupportedAudioError(
                f"unsupported SPHERE sample_byte_format '{byte_format}' for {sample_bytes}-byte samples"
            )
        endian = "<" if byte_format == ascending else ">"
        self._dtype = np.dtype(f"{endian}i{sample_bytes}")
        self.codec = f"pcm_s{8 * sample_bytes}{'le' if endian == '<' else 'be'}"
        self._scale = 2.0 ** (1 - 8 * sample_bytes)
        self._data_offset = header_size

        # Count frames from the data actually present: a cut-off file keeps its header's
        # sample_count, so that is only an upper bound.
        self._file.seek(0, 2)
        present = (self._file.tell() - header_size) // (sample_bytes * self.channels)
        declared = _sphere_int(fields, "sample_count", present)
        self.header_frames = max(0, min(present, declared))
        if declared > present:
            self.note = f"truncated: SPHERE header declares {declared} frames, the file holds {present}"

    def chunks(self) -> Iterator[np.ndarray]:
        assert self.header_frames is not None
        frame_bytes = self._dtype.itemsize * self.channels
        frames_per_read = max(1, _CHUNK_SAMPLES // self.channels)
        self._file.seek(self._data_offset)
        remaining = self.header_frames
        while remaining > 0:
            raw = self._file.read(min(frames_per_read, remaining) * frame_bytes)
            n = len(raw) // frame_bytes
            if n == 0:
                break
            remaining -= n
            samples = np.frombuffer(raw[: n * frame_bytes], dtype=self._dtype)
            yield (samples * self._scale).astype(np.float32).reshape(n, self.channels)

    def close(self) -> None:
        self._file.close()


def _parse_sphere_header(f: BinaryIO) -> tuple[dict[str, int | float | str], int]:
    f.seek(0)
    first = f.read(1024)
    lines = first.split(b"\n", 2)
    try:
        header_size = int(lines[1])
    except (IndexError, ValueError):
        raise UnsupportedAudioError("malformed SPHERE header: bad header size") from None
    if not 16 <= header_size <= _SPHERE_MAX_HEADER:
        raise UnsupportedAudioError(f"malformed SPHERE header: header size {header_size}")
    f.seek(0)
    header = f.read(header_size)
    if len(header) < header_size:
        raise UnsupportedAudioError("truncated SPHERE header")
    fields: dict[str, int | float | str] = {}
    for line in header.decode("latin-1").split("\n")[2:]:
        line = line.rstrip("\r")
        if line.strip() == "end_head":
            return fields, header_size
        if not line.strip() or line.startswith(";"):
            continue
        parts = line.split(None, 2)
        if len(parts) != 3 or not parts[1].startswith("-"):
            raise UnsupportedAudioError(f"malformed SPHERE header line: {line[:40]!r}")
        name, kind, value = parts
        try:
            if kind == "-i":
                fields[name] = int(value)
            elif kind == "-r":
                fields[name] = float(value)
            elif kind.startswith("-s"):
                fields[name] = value[: int(kind[2:])]
            else:
                raise ValueError(kind)
        except ValueError:
            raise UnsupportedAudioError(f"malformed SPHERE header line: {line[:40]!r}") from None
    raise UnsupportedAudioError("malformed SPHERE header: no end_head")


def _sphere_int(fields: dict[str, int | float | str], name: str, default: int) -> int:
    value = fields.get(name, default)
    if not isinstance(value, int):
        raise UnsupportedAudioError(f"malformed SPHERE header: {name} is not an integer")
    return value
