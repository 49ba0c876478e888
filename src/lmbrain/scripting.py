"""Set-up shared by the workflow's thin scripts (``scripts/*.py``)."""

from __future__ import annotations

import logging
import os
import sys


def start(snakemake) -> logging.Logger:
    """Send stderr and logging to the rule's log file and cap BLAS threads to the rule's.

    Parameters
    ----------
    snakemake : snakemake.script.Snakemake
        The object Snakemake injects into ``script:`` files.

    Returns
    -------
    logging.Logger
    """
    if snakemake.log:
        path = str(snakemake.log[0])
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        terminal = sys.stderr
        sys.stderr = open(path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job

        def report(exc_type, exc, tb):
            # The full traceback goes to the log; the one-line cause also to the terminal,
            # so a user sees which file is wrong without opening the log.
            sys.__excepthook__(exc_type, exc, tb)
            print(f"lmbrain error: {exc_type.__name__}: {exc} (log: {path})", file=terminal)

        sys.excepthook = report
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(snakemake.threads))
    return logging.getLogger("lmbrain")
