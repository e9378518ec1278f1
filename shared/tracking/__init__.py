"""Experiment tracking: experiments, runs, metrics, logged models."""
