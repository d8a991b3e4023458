"""logtide streams."""
