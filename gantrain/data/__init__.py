"""Datasets: each module registers builders in ``DATASETS``; each builder returns a ``DataSource``."""
