"""Shared by every stage: user errors, atomic writes, checked HDF5 and TSV reads, kill points."""
