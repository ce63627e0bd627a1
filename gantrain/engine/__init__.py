"""The shared machinery every recipe runs in: loop, checkpoints, logging, sampling."""
