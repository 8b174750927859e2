"""Tests of the condition language: parsing, the attribute catalog, compilation to SQL over real rows."""
