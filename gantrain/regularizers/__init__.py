"""Discriminator (critic) regularisers, composable with any loss; registered in ``REGULARIZERS``."""
