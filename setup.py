"""Build the optional C scanner of log lines (forensics/ingest/logs/_scan.c); everything else is in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and the log reader reads
every line in Python (the same results, slower).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("forensics.ingest.logs._scan", ["forensics/ingest/logs/_scan.c"], optional=True,
                             extra_compile_args=["-O2"])])
