"""tessera: text-to-video with its own synthetic 3D world.

Same seed, same bytes: on the CPU, MKL's matrix products round differently on different thread counts
(a 32x32 linear layer on 6 rows differed by 1 ulp between 1 and 2 threads, measured with torch 2.13 on
an AMD EPYC on 2026-12-06), so sampling would too. MKL's strict reproducible mode removes that at no
measured cost (the README's `tessera generate`, 2 cores, three runs each alternating: 18.4-20.7 s with
it, 19.1-21.4 s with MKL_CBWR=AUTO, the same bytes; 2026-12-06); it must be chosen before the first
matrix product, so it is set on import (a value the user set is kept).
"""

import os

os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__all__ = ["Pipeline", "load", "save"]


def __getattr__(name: str):
    """`tessera.load`, `tessera.save` and `tessera.Pipeline` (`tessera.api`), imported on first use so
    that `import tessera` stays light for the command line and for the training and world modules."""
    if name in __all__:
        from tessera import api  # imported on first use: see above

        return getattr(api, name)
    raise AttributeError(f"module 'tessera' has no attribute {name!r}")
