"""Adversarial losses: each module registers ``AdversarialLoss`` subclasses in ``LOSSES``."""
