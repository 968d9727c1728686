"""Fault injection against real Bobbin processes: the fault tests and the chaos run.

``python -m tests.chaos --messages 1000 --agents 50 --workers 4`` runs the chaos
run and prints its report; ``tests/chaos/test_*.py`` are the fault tests.
"""
