"""What measures the agent: evaluation over seeded episodes and its results
(intervals, CSV), calibrated margins, stress tests, System 1 against System 2,
distillation, the hierarchy comparison, pretraining and the lessons.

Above ``agents`` in the layering: it builds agents and runs them, and nothing
in ``agents`` (or below) imports it.
"""
