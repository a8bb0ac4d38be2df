"""Measurement: what a number is and where it came from. Meters of peak memory (CUDA allocator,
CPU live tensors), the analytic memory model, mixed precision, and a trial's provenance.

Modules: ``meters`` (:class:`~bench.measure.meters.PeakMemory`, ``metered_step``, parameter and
model-state counts, step timing, device descriptions), ``memory_model`` (predicted parameters
and peak bytes from a config, in a second), ``precision`` (autocast and gradient scaling),
``provenance`` (library versions, the git commit).
"""
