"""Latency as a cost: a device profile and what is built on it.

``profile`` is the profile type, its file format and the profiling pipeline;
``runs`` times its samples (micro-models, whole models, the channel tile) with
a resumable cache; ``fit`` turns samples into the quadratic latency form and
calibrates it on whole models; ``refine`` closes the loop on the device after
solving, and ``verify`` checks a pruned model against its budget. Imports
:mod:`itpl.model`, :mod:`itpl.method` and :mod:`itpl.deploy`.
"""
