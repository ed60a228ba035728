import numpy as np
import pytest

from audio_platform.audio.dsp import SAMPLE_RATE, colored_noise, dbfs_gain, resample


def test_resample_keeps_a_tone_and_its_duration():
    rate = 44_100
    t = np.arange(rate) / rate
    out = resample(np.sin(2 * np.pi * 440 * t), rate)
    assert out.dtype == np.float32 and out.size == SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(out))
    assert np.argmax(spectrum) == pytest.approx(440, abs=1)
    same = np.ones(10, dtype=np.float64)
    assert resample(same, SAMPLE_RATE).dtype == np.float32


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_colored_noise_has_unit_rms_no_dc_and_its_slope(exponent):
    noise = colored_noise(np.random.default_rng(0), 1 << 16, exponent)
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0) and abs(noise.mean()) < 1e-9
    power = np.abs(np.fft.rfft(noise)) ** 2
    low, high = power[10:100].mean(), power[1000:10000].mean()
    # 1/f**exponent: a decade apart in frequency is exponent decades apart in power (roughly).
    assert np.log10(low / high) == pytest.approx(exponent * np.log10(5500 / 55), abs=0.6)


def test_dbfs_gain():
    assert dbfs_gain(0.0) == 1.0 and dbfs_gain(-20.0) == pytest.approx(0.1)
