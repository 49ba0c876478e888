"""Set-up shared by the workflow's thin scripts (``scripts/*.py``)."""

from __future__ import annotations

import logging
import os
import sys

#: logger of progress lines (words/s, fit fractions): the job log, and the terminal too
PROGRESS = "lmbrain.progress"


def progress_logger() -> logging.Logger:
    """The logger whose messages :func:`start` also shows on the terminal."""
    return logging.getLogger(PROGRESS)


def _job_name(snakemake) -> str:
    """``rule wildcard=value ...`` of a job, to prefix its terminal lines."""
    rule = getattr(snakemake, "rule", "") or "job"
    wildcards = dict(getattr(snakemake, "wildcards", {}) or {})
    return " ".join([rule, *(f"{k}={v}" for k, v in wildcards.items())])


def start(snakemake) -> logging.Logger:
    """Send stderr and logging to the rule's log file and cap BLAS threads to the rule's.

    Messages of :func:`progress_logger` (extraction's words/s, a fit's fractions) go to the
    log file and also to the terminal Snakemake runs in, prefixed by the job
    (``[extract_features feature=...]``), so that a user of ``snakemake --cores N`` sees them.

    Parameters
    ----------
    snakemake : snakemake.script.Snakemake
        The object Snakemake injects into ``script:`` files.

    Returns
    -------
    logging.Logger
    """
    progress = progress_logger()
    for handler in list(progress.handlers):  # a second start() in one process
        progress.removeHandler(handler)
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
        to_terminal = logging.StreamHandler(terminal)
        to_terminal.setFormatter(logging.Formatter(f"[{_job_name(snakemake)}] %(message)s"))
        progress.addHandler(to_terminal)  # and, propagating, the log file
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(snakemake.threads))
    return logging.getLogger("lmbrain")


#: ``mallopt`` parameter number of ``M_MMAP_THRESHOLD`` (glibc's malloc.h)
_M_MMAP_THRESHOLD = -3


def fix_mmap_threshold(threshold: int = 1 << 20) -> bool:
    """Have glibc's malloc serve every block of ``threshold`` bytes or more with its own mmap.

    By default glibc raises this threshold (up to 32 MiB) each time it frees a block it had
    mapped, so that a model's activations (MiB-sized tensors, allocated and freed layer after
    layer) soon come from the heap, where freed memory stays resident in holes and in the
    heap's top padding: for SmolLM2-135M on the CPU, 70-110 MiB more at the peak of a feature
    extraction than with a fixed threshold (BENCHMARKS.md). With a fixed threshold each freed
    tensor goes back to the system at once; the cost is system time to map fresh zeroed pages,
    about a third more CPU time for that extraction.

    Parameters
    ----------
    threshold : int
        Bytes; glibc's own starting value is 128 KiB.

    Returns
    -------
    bool
        Whether it was set: False off glibc (macOS, musl, Windows) and when the user chose a
        threshold (``MALLOC_MMAP_THRESHOLD_`` or ``glibc.malloc.mmap_threshold`` in
        ``GLIBC_TUNABLES``), which is then left alone.
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or "glibc.malloc.mmap_threshold" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded into this process
        libc.gnu_get_libc_version  # noqa: B018 - glibc only
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError, TypeError):
        return False
