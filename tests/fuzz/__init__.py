"""Fuzz targets, corpora and harnesses for every parser that reads outside input (see docs/security.md)."""
