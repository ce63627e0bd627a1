"""Optimizers and learning-rate schedules, registered by name; built per network from the ``optim`` group."""
