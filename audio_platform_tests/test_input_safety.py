"""Input-safety review: the UI binds to loopback unless told otherwise, and the CLI never prints
credentials. (Reading only inside the drop root is tested on the real pipeline in
test_bad_inputs.py: links out of the drop are refused before a byte of their target is read.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from audio_platform import cli


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    """Commands `audio-platform serve` would start (nothing is started)."""
    monkeypatch.setenv("AUDIO_PLATFORM_HOME", str(tmp_path / "home"))
    commands: list[list[str]] = []

    def fake_call(command: list[str], **_: object) -> int:
        commands.append(command)
        return 0

    monkeypatch.setattr(subprocess, "call", fake_call)
    return commands


def _host_of(command: list[str]) -> str:
    return command[command.index("--host") + 1]


def test_serve_binds_to_loopback_by_default(served: list[list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve"]) == 0
    (command,) = served
    assert _host_of(command) == "127.0.0.1"
    assert "warning" not in capsys.readouterr().err


def test_serve_warns_when_exposed_beyond_loopback(
    served: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 0
    assert _host_of(served[0]) == "0.0.0.0"
    assert "no authentication" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://mlflow:s3cr3t@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
        ("https://:token@mlflow.example/api", "https://:***@mlflow.example/api"),
        ("https://user@mlflow.example", "https://user@mlflow.example"),
        ("sqlite:////home/x/mlflow.db", "sqlite:////home/x/mlflow.db"),
    ],
)
def test_printed_uris_carry_no_password(uri: str, shown: str) -> None:
    assert cli.redact_credentials(uri) == shown
