"""What the benchmarks measure with: wall time, and the peak memory a step adds (Linux)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    gc.collect()
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith(field + ":"))
    return int(line.split()[1])


def peak_mib(fn: Callable[..., Any], *args: Any) -> float:
    """Peak resident memory an engine adds on top of the inputs, from a separate, untimed run.

    The run happens in a forked child, which starts with the inputs resident and none of the
    memory the other engines left behind. The child resets its high-water mark (Linux
    ``clear_refs``), runs the engine and reports VmHWM minus the RSS it started with. This counts
    NumPy, Arrow and DuckDB allocations alike.
    """
    import os

    gc.collect()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            base = _status_kib("VmRSS")
            fn(*args)
            os.write(write, str(_status_kib("VmHWM") - base).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        added = pipe.read()
    os.waitpid(pid, 0)
    return int(added) / 1024 if added else float("nan")
