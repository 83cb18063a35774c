"""Stage 3, equivalence: the rewritten model against the original, on the same inputs."""
from .verify import PSNR_BAR, REL_BAR, EquivalenceReport, first_divergence, verify

__all__ = ["PSNR_BAR", "REL_BAR", "EquivalenceReport", "first_divergence", "verify"]
