"""Generators of small collections in their published layouts (fixtures for loaders, benchmarks)."""
