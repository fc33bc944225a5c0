"""Tests of the throwaway Slurm cluster (tests/peers/slurm.py) the batch-system tests use."""
