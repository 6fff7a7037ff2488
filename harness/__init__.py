"""deit-harness: declarative DeiT ablations, trained, stored and rebuilt as the paper's tables."""

__version__ = "0.1.0"
