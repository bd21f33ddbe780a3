"""Wall time per stage of a command (load, train, encode, evaluate, export, report), for the
scaling benchmark (``bench/scale.py``) and the run summaries.

The CLIs time their stages on :data:`CLOCK` and print it as one line, ``[tfvae] stage seconds: {...}``
(JSON), at the end.
"""

from __future__ import annotations

import json
import time

#: The line prefix ``bench/scale.py`` reads.
PREFIX = "[tfvae] stage seconds: "


class StageClock:
    """Seconds spent in each named stage. Stages run one after another: :meth:`lap` charges the time
    since the previous lap (or the clock's start) to a stage; a stage may recur (it adds up)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
        self._last = now

    def line(self) -> str:
        return PREFIX + json.dumps({k: round(v, 2) for k, v in self.seconds.items()})


#: The process's clock.
CLOCK = StageClock()


def parse(output: str) -> dict[str, float]:
    """The stage seconds a command printed (the last such line), ``{}`` if none."""
    lines = [ln for ln in output.splitlines() if ln.startswith(PREFIX)]
    return json.loads(lines[-1][len(PREFIX):]) if lines else {}
