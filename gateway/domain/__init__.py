"""The domain core, plain Python: matters, cases and their one transition table, the lifecycle steps, the
deadline clock, the working-day calendar, national codes, typed texts, sectors' answers, and the role model.

Imports nothing of ours outside itself and no I/O library (an import contract says so).
"""
