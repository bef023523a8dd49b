"""Datasets: loaders for each source format and the synthetic scene generator."""
