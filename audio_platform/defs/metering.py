"""Stage metering: wall and CPU seconds, audio seconds and real-time factor as asset metadata."""

import resource
import time
from dataclasses import dataclass, field
from typing import Any

from dagster import MetadataValue


@dataclass
class StageMeter:
    """Measures one stage; ``metadata()`` gives numeric values Dagster plots across partitions."""

    audio_s: float = 0.0
    _wall_start: float = field(default_factory=time.perf_counter)
    _cpu_start: float = field(default_factory=time.process_time)

    def metadata(self, **counts: Any) -> dict[str, Any]:
        wall = time.perf_counter() - self._wall_start
        cpu = time.process_time() - self._cpu_start
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        values: dict[str, Any] = {
            "audio_seconds": MetadataValue.float(round(self.audio_s, 3)),
            "wall_seconds": MetadataValue.float(round(wall, 3)),
            "cpu_seconds": MetadataValue.float(round(cpu, 3)),
            "real_time_factor": MetadataValue.float(round(self.audio_s / wall, 2) if wall > 0 else 0.0),
            "peak_rss_mb": MetadataValue.float(round(peak_rss_mb, 1)),
        }
        for name, value in counts.items():
            values[name] = MetadataValue.int(value) if isinstance(value, int) else value
        return values
