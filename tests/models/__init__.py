"""Tests of jaxretrieval.models (a package so its conftest has a unique module name)."""
