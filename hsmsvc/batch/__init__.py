"""Batch jobs over customer tables: stored-PIN re-encryption and its test data."""
