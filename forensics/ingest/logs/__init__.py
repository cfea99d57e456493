"""Stdout/stderr logs: streamed line by line, each line tried against a registry of formats.

`lines` streams physical lines with bounded memory, `clean` strips colours and rank prefixes,
`formats/` holds one module per log style, `events` finds lines that are evidence by themselves,
`steps` rebuilds the step axis when a log prints none, and `reader` puts it together.
"""
