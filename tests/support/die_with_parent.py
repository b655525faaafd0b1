"""Runs `python <args>` so that it dies with the process that started it: a killed test run
must not leave workers that join the next run's consumer groups on the same ports.

    python tests/support/die_with_parent.py -m services.insurance.worker worker

Sets Linux's PR_SET_PDEATHSIG, which survives exec, then becomes the real process. Done here,
after the fork, because a `preexec_fn` forks a multithreaded test process (gRPC's threads),
which gRPC's fork handlers abort."""
import ctypes
import os
import signal
import sys

if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
