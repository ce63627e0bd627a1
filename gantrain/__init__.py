"""gantrain: train GANs from the command line, one config group per part."""

__version__ = "0.1.0"
