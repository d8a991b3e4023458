"""logtide detectors."""
