"""Sweeps as bookkeeping over runs: the plan a sweep saves (plan.py), its job folders' names, one job's
failure and resume (job.py), the results table (results.py), TensorBoard HParams (hparams.py) and the Hydra
callback that ties them to ``gantrain -m`` (callback.py). Each run's own summary is gantrain/engine/summary.py.
"""
