"""Tests of jaxattr.runs (resumable experiment infrastructure)."""
