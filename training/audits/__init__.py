"""Audits of data and models: shortcut checks (source probe, leave-one-source-out, lungs only)."""
