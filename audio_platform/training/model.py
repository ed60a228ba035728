"""TC-ResNet keyword spotter and the self-contained model bundle used for inference.

TC-ResNet (Choi et al., 2019) treats mel bins as channels and convolves over time only, so it
is small (about 66k parameters at the default widths) and cheap enough to run on every hop of
a sliding window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.training.config import DEFAULT_VERIFIER_HYPOTHESES, FeatureConfig, ModelConfig
from audio_platform.training.features import Cmvn, LogMel
from audio_platform.training.verify import KeywordVerifier

# A spotter alone is saved as format 1, which every release reads. A two-stage bundle is format 2,
# which a release from before verification refuses: it would run the spotter alone at a threshold
# chosen for two stages, and fire far more often than the model's metrics say.
SPOTTER_BUNDLE_FORMAT = 1
VERIFIED_BUNDLE_FORMAT = 2


class _ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        padding = kernel_size // 2
        self.body = nn.Sequential(
            nn.Conv1d(in_channels, out_channels, kernel_size, stride=2, padding=padding, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(),
            nn.Conv1d(out_channels, out_channels, kernel_size, padding=padding, bias=False),
            nn.BatchNorm1d(out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.Conv1d(in_channels, out_channels, 1, stride=2, bias=False), nn.BatchNorm1d(out_channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class TCResNet(nn.Module):
    """Normalised log-mel [B, n_mels, frames] -> keyword logit [B]."""

    def __init__(self, n_mels: int, config: ModelConfig) -> None:
        super().__init__()
        stem, *widths = config.channels
        self.stem = nn.Sequential(nn.Conv1d(n_mels, stem, 3, padding=1, bias=False), nn.BatchNorm1d(stem), nn.ReLU())
        ins = [stem, *widths[:-1]]
        self.blocks = nn.Sequential(
            *(_ResidualBlock(i, o, config.kernel_size) for i, o in zip(ins, widths, strict=True))
        )
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(widths[-1], 1))

    def forward(self, features: Tensor) -> Tensor:
        pooled = self.blocks(self.stem(features)).mean(dim=2)
        return self.head(pooled).squeeze(1)


class KeywordSpotter(nn.Module):
    """Waveforms [B, clip samples] at 16 kHz -> keyword probability [B]; features and CMVN inside."""

    def __init__(self, features: FeatureConfig, model: ModelConfig) -> None:
        super().__init__()
        self.logmel = LogMel(features)
        self.cmvn = Cmvn(features.n_mels)
        self.net = TCResNet(features.n_mels, model)

    def forward(self, waves: Tensor) -> Tensor:
        return torch.sigmoid(self.net(self.cmvn(self.logmel(waves))))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@dataclass(eq=False)
class ModelBundle:
    """Everything inference needs: the keyword, clip length, feature and model settings, the
    weights (CMVN statistics are buffers in ``state_dict``), the validation-chosen threshold and,
    when a detection must be confirmed by Whisper, the verifier's model and hypothesis count."""

    keyword: str
    clip_s: float
    features: FeatureConfig
    model: ModelConfig
    state_dict: dict[str, Tensor]
    threshold: float
    verifier_model: str | None = None
    verifier_hypotheses: int = DEFAULT_VERIFIER_HYPOTHESES

    @property
    def clip_samples(self) -> int:
        return round(self.clip_s * SAMPLE_RATE)

    @cached_property
    def spotter(self) -> KeywordSpotter:
        """The network in eval mode on CPU, built once per bundle."""
        # Building the modules draws (soon overwritten) initial weights: keep the caller's RNG intact.
        with torch.random.fork_rng(devices=[]):
            spotter = KeywordSpotter(self.features, self.model)
        spotter.load_state_dict(self.state_dict)
        return spotter.eval()

    @cached_property
    def verifier(self) -> KeywordVerifier | None:
        """The second stage that confirms detections, or None for the spotter alone."""
        if self.verifier_model is None:
            return None
        return KeywordVerifier(self.keyword, self.verifier_model, self.verifier_hypotheses)

    @torch.no_grad()
    def score(self, waves: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Keyword probability of each clip-length waveform in ``waves`` [N, clip samples]."""
        tensor = torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32))
        scores = [self.spotter(batch) for batch in tensor.split(batch_size)]
        return torch.cat(scores).numpy() if scores else np.zeros(0, dtype=np.float32)

    def save(self, path: str | Path) -> None:
        torch.save(
            {
                "format": SPOTTER_BUNDLE_FORMAT if self.verifier_model is None else VERIFIED_BUNDLE_FORMAT,
                "keyword": self.keyword,
                "clip_s": self.clip_s,
                "features": asdict(self.features),
                "model": asdict(self.model),
                "state_dict": self.state_dict,
                "threshold": self.threshold,
                "verifier_model": self.verifier_model,
                "verifier_hypotheses": self.verifier_hypotheses,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        # weights_only: the file holds tensors and plain values only, never pickled code.
        payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") not in (SPOTTER_BUNDLE_FORMAT, VERIFIED_BUNDLE_FORMAT):
            raise ValueError(f"{path}: unsupported bundle format {payload.get('format')!r}")
        model = dict(payload["model"])
        model["channels"] = tuple(model["channels"])
        return cls(
            keyword=payload["keyword"],
            clip_s=float(payload["clip_s"]),
            features=FeatureConfig(**payload["features"]),
            model=ModelConfig(**model),
            state_dict=payload["state_dict"],
            threshold=float(payload["threshold"]),
            # Bundles saved before verification existed are spotters alone.
            verifier_model=payload.get("verifier_model"),
            verifier_hypotheses=int(payload.get("verifier_hypotheses", DEFAULT_VERIFIER_HYPOTHESES)),
        )

    def export_torchscript(self, path: str | Path) -> None:
        """Waveform-in, probability-out TorchScript file, for runtimes without this package."""
        example = torch.zeros(1, self.clip_samples)
        with torch.no_grad():
            traced = torch.jit.trace(self.spotter, example)
        traced.save(str(path))
