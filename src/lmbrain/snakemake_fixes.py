"""Work-arounds for Snakemake bugs that break a promise the workflow makes.

:func:`bound_cores` makes ``--cores N`` a true bound on local runs again. Since Snakemake
9.10, the job scheduler returns early when exactly one job is ready, without subtracting that
job's threads from the free cores, but still adds them back when the job finishes
(``JobScheduler.job_selector`` -> ``run_selector``, the ``len(jobs) == 1`` branch, in
snakemake/scheduling/job_scheduler.py of 9.15.0; upstream issues snakemake/snakemake#3913,
"Greedy scheduler uses more cores than provided", and #3815, "Total resources increase with
time"). Each time a lone ready job runs, the pool of free cores grows by its threads: with
``--cores 1``, after ``simulate_dataset`` ran alone two jobs ran side by side, then three...
(two feature extractions at once were how it was noticed).
"""

from __future__ import annotations

import functools


def bound_cores() -> bool:
    """Patch Snakemake's job scheduler so that a job selected alone consumes its resources.

    The patch checks, after each selection, whether the free resources went down by what the
    selected jobs hold; if they did not (the faulty branch), it subtracts them. A Snakemake
    that does it itself is left alone, so the patch is harmless once upstream is fixed.
    Idempotent.

    Returns
    -------
    bool
        Whether the scheduler was patched (False if Snakemake's internals moved, and the
        patch cannot apply).
    """
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    original = getattr(JobScheduler, "job_selector", None)
    if original is None or not hasattr(JobScheduler, "update_available_resources"):
        return False
    if getattr(original, "_lmbrain_bound_cores", False):
        return True

    @functools.wraps(original)
    def job_selector(self, jobs):
        before = dict(getattr(self, "resources", {}))
        selected = original(self, jobs)
        charge_selected(self, before, selected)
        return selected

    job_selector._lmbrain_bound_cores = True
    JobScheduler.job_selector = job_selector
    return True


def charge_selected(scheduler, before: dict, selected) -> bool:
    """Subtract the selected jobs' resources from the scheduler's free ones, unless done.

    Parameters
    ----------
    scheduler : snakemake.scheduling.job_scheduler.JobScheduler
        Its ``resources`` (free now), ``update_available_resources`` and ``_lock``.
    before : dict
        Its free resources before the selection.
    selected : sequence of jobs
        What the selection returned (each with ``scheduler_resources``).

    Returns
    -------
    bool
        Whether it subtracted them (the selection had not).
    """
    if not selected or "_cores" not in before:
        return False
    held = sum(job.scheduler_resources.get("_cores", 0) for job in selected)
    if not held or scheduler.resources.get("_cores") != before["_cores"]:
        return False
    with scheduler._lock:
        scheduler.update_available_resources(selected)
    return True
