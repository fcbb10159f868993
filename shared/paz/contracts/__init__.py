"""The wire contracts between services: what one service answers and another reads or relays.

A schema lives here when more than one service answers it or reads it (the orchestrator documents
the directory's and the scheduler's answers as its own, since it relays them), so no service package
imports another. A schema only one service uses stays in that service's ``schemas.py``.
"""
