"""Capacity plan: run pods, throughput and cost per N audio hours on Kubernetes (k8s/values.yaml).

    .venv/bin/python -m benchmarks.capacity_plan [--rtf 15.9] [--price-per-cpu-hour 0.045] [--audio-hours 1000] ...

Pure arithmetic over measured inputs; docs/capacity_plan.md says where each default comes from.
A shard run is one pod of ``--cpus-per-pod`` vCPUs that processes ``--shard-files`` files at the
end-to-end real-time factor ``--rtf`` (audio seconds per wall second, as `audio-platform process`
prints it) after ``--pod-overhead-s`` of start-up (scheduling, imports, model load).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

HOURS_PER_MONTH = 730.0
# The decoded-audio cache holds float32 at 16 kHz (audio_platform/audio/pcm_cache.py).
CACHE_BYTES_PER_AUDIO_HOUR = 16_000 * 4 * 3600


@dataclass(frozen=True)
class PlanInputs:
    rtf: float = 15.9
    price_per_cpu_hour: float = 0.045
    audio_hours: float = 1000.0
    cpus_per_pod: int = 2
    pod_overhead_s: float = 30.0
    shard_files: int = 2000
    mean_file_s: float = 6.8
    max_concurrent_runs: int = 20
    # Requests of webserver, daemon, code server (k8s/values.yaml) and PostgreSQL, always on.
    control_plane_cpus: float = 1.25
    segments_per_audio_hour: float = 726.0
    lake_bytes_per_segment: float = 124.0

    def __post_init__(self) -> None:
        for name in ("rtf", "audio_hours", "cpus_per_pod", "shard_files", "mean_file_s", "max_concurrent_runs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.price_per_cpu_hour < 0 or self.pod_overhead_s < 0:
            raise ValueError("price and overhead must be >= 0")


@dataclass(frozen=True)
class Plan:
    inputs: PlanInputs
    runs: int
    minutes_per_run: float
    pod_hours: float
    cpu_hours: float
    compute_cost: float
    wall_hours_at_max_runs: float
    pods_for_24h: int | None
    pods_for_1h: int | None
    control_plane_cost_per_month: float
    cache_gb: float
    lake_gb: float
    segments: float

    @property
    def audio_hours_per_pod_hour(self) -> float:
        return self.inputs.audio_hours / self.pod_hours

    @property
    def cost_per_audio_hour(self) -> float:
        return self.compute_cost / self.inputs.audio_hours


def _pods_for(runs: int, minutes_per_run: float, hours: float) -> int | None:
    """Pods that finish ``runs`` equal runs within ``hours``; None if one run alone takes longer."""
    waves = math.floor(hours * 60 / minutes_per_run)
    return math.ceil(runs / waves) if waves else None


def plan(inputs: PlanInputs) -> Plan:
    shard_audio_s = inputs.shard_files * inputs.mean_file_s
    runs = math.ceil(inputs.audio_hours * 3600 / shard_audio_s)
    minutes_per_run = (shard_audio_s / inputs.rtf + inputs.pod_overhead_s) / 60
    # Every run pays the start-up once; the last run may be a partial shard.
    pod_hours = (inputs.audio_hours * 3600 / inputs.rtf + runs * inputs.pod_overhead_s) / 3600
    cpu_hours = pod_hours * inputs.cpus_per_pod
    segments = inputs.audio_hours * inputs.segments_per_audio_hour
    return Plan(
        inputs=inputs,
        runs=runs,
        minutes_per_run=minutes_per_run,
        pod_hours=pod_hours,
        cpu_hours=cpu_hours,
        compute_cost=cpu_hours * inputs.price_per_cpu_hour,
        # Runs are equal and indivisible: the queue drains in waves of maxConcurrentRuns pods.
        wall_hours_at_max_runs=math.ceil(runs / inputs.max_concurrent_runs) * minutes_per_run / 60,
        pods_for_24h=_pods_for(runs, minutes_per_run, 24),
        pods_for_1h=_pods_for(runs, minutes_per_run, 1),
        control_plane_cost_per_month=inputs.control_plane_cpus * inputs.price_per_cpu_hour * HOURS_PER_MONTH,
        cache_gb=inputs.audio_hours * CACHE_BYTES_PER_AUDIO_HOUR / 1e9,
        lake_gb=segments * inputs.lake_bytes_per_segment / 1e9,
        segments=segments,
    )


def _or_dash(pods: int | None) -> str:
    return "- (one run takes longer: smaller shards)" if pods is None else f"{pods:,}"


def render_markdown(p: Plan) -> str:
    i = p.inputs
    rows = [
        (
            "shard runs (pods started)",
            f"{p.runs:,} of {i.shard_files:,} files ({i.shard_files * i.mean_file_s / 3600:.1f} h)",
        ),
        ("time per run", f"{p.minutes_per_run:.1f} min ({i.pod_overhead_s:.0f} s start-up)"),
        ("throughput per run pod", f"{p.audio_hours_per_pod_hour:.1f} audio h per pod-hour"),
        ("run-pod hours", f"{p.pod_hours:,.1f}"),
        ("vCPU-hours", f"{p.cpu_hours:,.1f} ({i.cpus_per_pod} vCPU per pod)"),
        ("compute cost", f"${p.compute_cost:,.2f} (${p.cost_per_audio_hour:.4f} per audio hour)"),
        (
            "wall time at maxConcurrentRuns",
            f"{p.wall_hours_at_max_runs:.2f} h with {min(i.max_concurrent_runs, p.runs)} pods",
        ),
        ("pods for a 24 h / 1 h turnaround", f"{_or_dash(p.pods_for_24h)} / {_or_dash(p.pods_for_1h)}"),
        (
            "control plane (always on)",
            f"${p.control_plane_cost_per_month:,.2f} per month ({i.control_plane_cpus} vCPU)",
        ),
        ("segments / lake (segments+transcripts)", f"{p.segments:,.0f} / {p.lake_gb:.2f} GB"),
        ("decoded-audio cache (prunable)", f"{p.cache_gb:,.0f} GB"),
    ]
    header = (
        f"{i.audio_hours:,.0f} audio hours at RTF {i.rtf:g}x per {i.cpus_per_pod}-vCPU pod, "
        f"${i.price_per_cpu_hour:g} per vCPU-hour"
    )
    return "\n".join([f"**{header}**", "", "| quantity | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    for field in fields(PlanInputs):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    args = parser.parse_args(argv)
    print(render_markdown(plan(PlanInputs(**vars(args)))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
