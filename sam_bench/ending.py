"""How a command's process ends once its work is done: at once, without the interpreter's
shutdown.

Python's shutdown tears down every module (torch, sam2, MLflow: ~0.5 s on a 2-core CPU) and
frees the heap object by object; none of it is the command's work. :func:`end_process` does
what a shutdown does that matters and then ends the process: the atexit handlers run
(logging's flushes and closes its files, MLflow's, a caller's), then standard output and error
are flushed. Where a non-daemon thread still runs (the interpreter would wait for it), the
process ends the usual way instead. Only for code that owns its process (a command's entry
point, a helper process): nothing after the call runs.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def end_process(code: int) -> NoReturn:
    """End this process with exit status ``code`` (see the module docstring)."""
    main = threading.main_thread()
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    try:
        atexit._run_exitfuncs()  # what Python's shutdown would run; errors are printed
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
