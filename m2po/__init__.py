"""m2po: M2PO and its baselines for stale-data off-policy RL on LLMs (arXiv 2510.01161)."""

__version__ = "0.1.0"
