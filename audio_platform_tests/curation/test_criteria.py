from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from audio_platform.curation.criteria import (
    FILLER_FORMULAS,
    FILLER_WHOLE_TEXTS,
    LOUDNESS_FLOOR_DBFS,
    SAMPLE_RATE,
    SNR_MAX_DB,
    SNR_MIN_DB,
    acoustic_features,
    add_plausibility_criteria,
    add_text_criteria,
    estimate_snr_db,
    is_filler_phrase,
    repeated_ngram_ratio,
)
from audio_platform.evaluation.wer import normalize_text

SECONDS = 3.0


def _time(seconds: float = SECONDS) -> np.ndarray:
    return np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE


def _tone(amplitude: float, seconds: float = SECONDS, freq: float = 220.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * _time(seconds))


def _syllables(amplitude: float = 0.3) -> np.ndarray:
    """Speech-like test signal: 200 ms tone bursts separated by 130 ms pauses.

    Blind SNR estimation needs pauses (as real speech has); a continuous tone
    is indistinguishable from stationary hum.
    """
    gate = (_time() % 0.33) < 0.2
    return _tone(amplitude) * gate


@pytest.mark.parametrize("target_db", [0.0, 10.0, 20.0, 30.0])
def test_snr_estimate_tracks_known_white_noise_level(target_db: float) -> None:
    rng = np.random.default_rng(int(target_db))
    clean = _syllables()
    clean_power = float(np.mean(clean**2))
    noise = rng.normal(0.0, math.sqrt(clean_power / 10 ** (target_db / 10)), clean.size)
    true_db = 10 * math.log10(clean_power / float(np.mean(noise**2)))

    features = acoustic_features((clean + noise).astype(np.float32), 0.0, SECONDS)

    assert features.snr_db == pytest.approx(true_db, abs=1.5)


def test_snr_extremes_stay_in_bounds() -> None:
    rng = np.random.default_rng(1)
    noise_only = acoustic_features(rng.normal(0.0, 0.1, SAMPLE_RATE), 0.0, 1.0)
    clean = acoustic_features(_syllables(), 0.0, SECONDS)
    # Stationary noise alone: the "signal" is only the spread of frame powers.
    assert SNR_MIN_DB <= noise_only.snr_db < -5.0
    assert 50.0 < clean.snr_db <= SNR_MAX_DB


def test_digital_silence_is_finite() -> None:
    features = acoustic_features(np.zeros(SAMPLE_RATE, dtype=np.float32), 0.0, 1.0)
    assert features.snr_db == SNR_MIN_DB
    assert features.loudness_dbfs == LOUDNESS_FLOOR_DBFS
    assert features.clipping_ratio == 0.0
    assert features.dc_offset == 0.0


def test_hard_clipping_is_detected() -> None:
    # A sine of amplitude 2 hard-clipped at full scale sits at >= 0.99 where
    # |sin| >= 0.495: a fraction 1 - (2/pi) * asin(0.495) of the time.
    clipped = np.clip(_tone(2.0), -1.0, 1.0)
    expected = 1 - 2 / math.pi * math.asin(0.495)
    assert acoustic_features(clipped, 0.0, SECONDS).clipping_ratio == pytest.approx(expected, abs=0.005)
    assert acoustic_features(_tone(0.5), 0.0, SECONDS).clipping_ratio == 0.0


def test_loudness_is_rms_dbfs() -> None:
    assert acoustic_features(_tone(1.0), 0.0, SECONDS).loudness_dbfs == pytest.approx(-3.01, abs=0.01)
    assert acoustic_features(_tone(0.1), 0.0, SECONDS).loudness_dbfs == pytest.approx(-23.01, abs=0.01)


def test_dc_offset_is_measured_and_excluded_from_loudness() -> None:
    features = acoustic_features(_tone(0.1) + 0.25, 0.0, SECONDS)
    assert features.dc_offset == pytest.approx(0.25, abs=1e-3)
    assert features.loudness_dbfs == pytest.approx(-23.01, abs=0.01)


def test_segment_bounds_select_samples() -> None:
    audio = np.concatenate([np.zeros(SAMPLE_RATE), _tone(0.1, seconds=1.0)]).astype(np.float32)
    assert acoustic_features(audio, 0.0, 1.0).loudness_dbfs == LOUDNESS_FLOOR_DBFS
    assert acoustic_features(audio, 1.0, 2.0).loudness_dbfs == pytest.approx(-23.01, abs=0.01)
    # An end slightly past the audio (rounding in upstream timestamps) is clipped.
    assert acoustic_features(audio, 1.0, 2.001).loudness_dbfs == pytest.approx(-23.01, abs=0.01)


@pytest.mark.parametrize(
    ("audio", "start_s", "end_s"),
    [
        (np.zeros((2, SAMPLE_RATE)), 0.0, 1.0),
        (np.zeros(SAMPLE_RATE), 0.5, 0.5),
        (np.zeros(SAMPLE_RATE), -0.1, 0.5),
        (np.zeros(SAMPLE_RATE), 0.0, math.nan),
        (np.zeros(SAMPLE_RATE), 2.0, 3.0),
    ],
)
def test_invalid_segments_raise(audio: np.ndarray, start_s: float, end_s: float) -> None:
    with pytest.raises(ValueError):
        acoustic_features(audio, start_s, end_s)


def test_segment_shorter_than_a_frame_gets_floor_snr() -> None:
    assert estimate_snr_db(_tone(0.1, seconds=0.01)) == SNR_MIN_DB


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, st.integers(1, 4000), elements=st.floats(-1.5, 1.5, width=32)))
def test_features_are_bounded_for_any_audio(audio: np.ndarray) -> None:
    features = acoustic_features(audio, 0.0, audio.size / SAMPLE_RATE)
    assert SNR_MIN_DB <= features.snr_db <= SNR_MAX_DB
    assert 0.0 <= features.clipping_ratio <= 1.0
    assert LOUDNESS_FLOOR_DBFS <= features.loudness_dbfs <= 3.6  # 1.5 full scale
    assert math.isfinite(features.dc_offset)


def _frame(**columns: Sequence[object]) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    base: dict[str, Sequence[object]] = {
        "duration_s": [5.0] * n,
        "text": ["a"] * n,
        "loudness_dbfs": [-23.0] * n,
    }
    return pl.DataFrame({**base, **columns})


def test_speaking_rate_counts_whitespace_separated_words() -> None:
    out = add_text_criteria(
        _frame(text=["  hello   world\tfoo ", "", None, "ab cd"], duration_s=[1.5, 2.0, 2.0, 2.0])
    )
    assert out["speaking_rate"].to_list() == [2.0, 0.0, 0.0, 1.0]
    assert out["chars_per_second"].to_list() == pytest.approx([13 / 1.5, 0.0, 0.0, 2.0])


def test_speaking_rate_deviation_is_octaves_from_natural_rate() -> None:
    out = add_text_criteria(_frame(text=[" ".join(["w"] * n) for n in (27, 54, 0)], duration_s=[10.0] * 3))
    deviation = out["speaking_rate_deviation"].to_list()
    assert deviation[:2] == pytest.approx([0.0, 1.0])
    assert deviation[2] == math.inf


def test_duration_fitness_band() -> None:
    durations = [0.5, 1.0, 2.0, 10.0, 15.0, 22.5, 30.0, 40.0]
    out = add_text_criteria(_frame(duration_s=durations))
    assert out["duration_fitness"].to_list() == pytest.approx([0.25, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0])


def test_loudness_deviation_from_target() -> None:
    out = add_text_criteria(_frame(loudness_dbfs=[-23.0, -33.0, -13.0, -120.0]))
    assert out["loudness_deviation_db"].to_list() == pytest.approx([0.0, 10.0, 10.0, 97.0])


def test_all_null_text_column_counts_as_empty() -> None:
    frame = pl.DataFrame({"duration_s": [2.0], "text": [None], "loudness_dbfs": [-23.0]})
    assert add_text_criteria(frame)["speaking_rate"].to_list() == [0.0]


def test_unusable_duration_gives_null_rates() -> None:
    out = add_text_criteria(_frame(duration_s=[None, 0.0]))
    for column in ("speaking_rate", "chars_per_second", "speaking_rate_deviation", "duration_fitness"):
        assert out[column].to_list() == [None, None]


def test_add_text_criteria_keeps_input_columns_and_rows() -> None:
    frame = _frame(segment_id=["s1", "s2"])
    out = add_text_criteria(frame)
    assert out.select(frame.columns).equals(frame)


def test_add_text_criteria_requires_columns() -> None:
    with pytest.raises(ValueError, match="loudness_dbfs"):
        add_text_criteria(pl.DataFrame({"duration_s": [1.0], "text": ["a"]}))


LOOP = ", ".join(["we are going to do this"] * 4)
JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


def test_repeated_ngram_ratio_flags_a_decoding_loop() -> None:
    # 24 words, 22 trigrams of which only the first 6 are new.
    assert repeated_ngram_ratio(LOOP) == pytest.approx(16 / 22)
    assert repeated_ngram_ratio("She had your dark suit in greasy wash water all year.") == 0.0
    # A rhetorical repeat in real speech stays low: one trigram of 20 ("can do for").
    assert repeated_ngram_ratio(JFK) == pytest.approx(1 / 20)
    # Case and punctuation do not hide a loop.
    assert repeated_ngram_ratio("Stop. STOP, stop! stop") == repeated_ngram_ratio("stop stop stop stop")


def test_repeated_ngram_ratio_uses_bigrams_on_short_texts_and_spares_very_short_ones() -> None:
    # 6 words: bigrams ("go on", "on go" recur), where trigrams would be only four.
    assert repeated_ngram_ratio("go on go on go on") == pytest.approx(3 / 5)
    assert repeated_ngram_ratio("stop stop stop stop") == pytest.approx(2 / 3)
    # Under 4 words a repeat is as likely emphasis as a loop.
    for text in ("no no no", "yes yes", "", None):
        assert repeated_ngram_ratio(text) == 0.0


@pytest.mark.parametrize(
    ("text", "filler"),
    [
        ("Thank you.", True),
        ("THANK YOU!!!", True),
        ("you", True),
        ("Thank you. Thank you. Thank you.", True),
        ("Thanks for watching!", True),
        ("Subtitles by the Amara.org community", True),
        ("Please subscribe to my channel.", True),
        ("and that is all for today, thanks for watching and see you next week", True),
        ("Transcribed by ESO, translated by —", True),
        # Real speech: the phrase inside a longer transcript is not a hallucination.
        ("thank you very much for coming to the meeting today", False),
        ("Thank you for listening to this demonstration.", False),
        ("You know what, thank you", False),
        ("young people", False),
        ("Yes.", False),
        ("", False),
        (None, False),
    ],
)
def test_filler_phrases(text: str | None, filler: bool) -> None:
    assert is_filler_phrase(text) is filler


def test_filler_phrase_lists_are_in_normalized_form() -> None:
    # They are matched against normalize_text output, so they must be written in it.
    for phrase in (*FILLER_WHOLE_TEXTS, *FILLER_FORMULAS):
        assert normalize_text(phrase) == phrase


def _texts(texts: Sequence[str | None], durations: Sequence[float | None]) -> pl.DataFrame:
    return add_plausibility_criteria(pl.DataFrame({"text": texts, "duration_s": durations}))


def test_longest_word_chars() -> None:
    out = _texts(
        [
            "so " + "xq" * 20,
            "she sells sea shells",
            "don't stop",
            # Spelled-out letters and hyphenated compounds are split at the hyphens.
            "P-I-T-T-S-B-U-R-G-H, a state-of-the-art twenty-five-year-old",
            # Scripts without spaces between words are not one long word.
            "我们今天去公园散步吧好不好呢我们今天去公园散步吧好不好呢",
            "",
            None,
        ],
        [2.0] * 7,
    )
    assert out["longest_word_chars"].to_list() == [40, 6, 5, 6, 0, 0, 0]


def test_chars_per_second_counts_letters_and_digits() -> None:
    out = _texts(["Hello, world! 42 -- ok...", "бедняга ребят", "", "a", "a"], [2.0, 1.0, 3.0, None, 0.0])
    assert out["chars_per_second"].to_list() == pytest.approx([7.0, 12.0, 0.0, None, None])


def test_plausibility_columns_on_a_frame() -> None:
    out = _texts(
        [LOOP, "Thank you.", "thank you very much for coming to the meeting today", None], [6.0, 3.0, 3.0, 2.0]
    )
    assert out.columns == [
        "text",
        "duration_s",
        "repeated_ngram_ratio",
        "longest_word_chars",
        "chars_per_second",
        "filler_phrase",
    ]
    assert out["repeated_ngram_ratio"].to_list() == pytest.approx([16 / 22, 0.0, 0.0, 0.0])
    assert out["filler_phrase"].to_list() == [False, True, False, False]
    assert out["chars_per_second"][1] == pytest.approx(8 / 3)
    assert out.schema["longest_word_chars"] == pl.Int64 and out.schema["filler_phrase"] == pl.Boolean
    # All-null text (dtype Null) and an empty frame keep working.
    all_null = add_plausibility_criteria(pl.DataFrame({"text": [None], "duration_s": [1.0]}))
    assert all_null["filler_phrase"].to_list() == [False]
    assert _texts([], []).height == 0


def test_add_text_criteria_adds_the_plausibility_columns() -> None:
    out = add_text_criteria(_frame(text=[LOOP], duration_s=[6.0]))
    assert out["repeated_ngram_ratio"].to_list() == pytest.approx([16 / 22])
    with pytest.raises(ValueError, match="duration_s"):
        add_plausibility_criteria(pl.DataFrame({"text": ["a"]}))
