"""Long runs: streaming batches with stopping criteria (``streaming``), atomic checkpoints and resume
(``checkpoint``), distributed runs on Dask (``distributed``) and the CLI job driver (``job``).

Every piece works on consecutive ranges of history indices.  A history's random numbers depend only on
(seed, history index) and the tallies are integers, so any split of [0, N) into batches, checkpoint
segments or Dask chunks gives the same integer sums: the dose is bitwise independent of the batching, of
interruptions and of the number of workers on the CPU backend.
"""
from .streaming import BatchPlan, LocalExecutor, StreamResult, is_out_of_memory, mean_rel_uncertainty_50, \
    stream

__all__ = ["BatchPlan", "LocalExecutor", "StreamResult", "is_out_of_memory", "mean_rel_uncertainty_50",
           "stream"]
