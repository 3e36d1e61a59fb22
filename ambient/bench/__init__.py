"""Benchmarks that check ambient's performance claims on the machine at hand."""
