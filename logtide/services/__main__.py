"""`python -m logtide.services up|down|status` (the same commands as `logtide services`)."""

from logtide.services.cli import services

services()
