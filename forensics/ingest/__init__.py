"""Readers: one module per kind of source a training run leaves on disk.

Every reader returns what it could read plus a list of `InputProblem`s; none raises on bad bytes.
"""
