"""Stage 5, analysis: a static ANE readiness report of an exported ML Program — placement
rules (``placement``), metrics and findings (``report``), analytic estimates (``estimate``)."""
from .report import Analysis, Finding, analyze, format_analysis

__all__ = ["Analysis", "Finding", "analyze", "format_analysis"]
