"""Reasoning problems from dependency graphs: generator, contexts, renderings, verifier, corpora."""
