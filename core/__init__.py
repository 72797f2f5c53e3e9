"""Shared ground floor below every stage: typed configs, provenance, output locks, run directories, the sampler."""
