"""Training recipes: one file per training algorithm, registered in ``RECIPES``."""
