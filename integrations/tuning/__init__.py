"""The tuning place: the daemon tunes the personal adapter when idle (off by default)."""
