"""The report: plain data built from the run model and the check outcomes; renderers read only this."""
