"""logtide sinks."""
