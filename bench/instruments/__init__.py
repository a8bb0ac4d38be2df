"""Instruments: commands that measure the engines themselves rather than run ablations.

``benchmark`` (``python -m bench bench``: the engines side by side, memory and time with
intervals), ``gpu_check`` (``python -m bench gpu-check``: the paper's memory figures at its
scale on one GPU), ``gpu_backlog`` (``python -m bench gpu-backlog``: the GPU work still missing
at today's code, in priority order, inside one call's budget), ``drift`` (``python -m bench
drift``: the reversible inverse's reconstruction error against depth), ``capacity`` (``python -m
bench capacity``: the deepest or widest model of each arch that fits a memory size on a graph,
from the memory model; ``--verify`` runs the boundary).
"""
