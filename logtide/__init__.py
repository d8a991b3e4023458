"""logtide: an event-streaming log and metrics pipeline."""

__version__ = "0.1.0"
