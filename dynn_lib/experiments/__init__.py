"""Experiments: one module per research question, each a function from a config to tidy DataFrames."""
