"""logtide shippers."""
