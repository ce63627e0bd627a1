"""Augmentations of what a discriminator sees (DiffAugment, ADA), registered in ``AUGMENTATIONS``."""
