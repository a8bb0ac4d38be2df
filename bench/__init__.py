"""gnn1000-bench: memory-efficient deep GNNs (reversible, weight-tied, DEQ), measured."""

__version__ = "0.1.0"
