"""Unit tests: plain Python, no database, no network, no subprocess (files under tmp_path are fine).
`make check` runs these."""
