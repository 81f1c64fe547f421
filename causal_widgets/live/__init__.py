"""Measuring while training: the monitor, the executors it runs work on, and the history it
records.
"""
