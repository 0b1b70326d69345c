"""Readers of other tools' trace formats (Mooncake, Azure, BurstGPT, Vidur, ShareGPT, user column maps).

The table of format names lives in workload/trace_formats.py; each reader returns a traces.Trace.
"""
