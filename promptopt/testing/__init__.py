"""Test and benchmark utilities that ship with the package (fakes, loopback servers)."""
