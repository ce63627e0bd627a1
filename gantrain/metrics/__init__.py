"""Sample-quality metrics (FID, KID, Inception Score, precision/recall, toy mode coverage), one module each."""
