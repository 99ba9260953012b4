"""Reusable console pieces: invoice table with multi-select, filter bar, badges."""
