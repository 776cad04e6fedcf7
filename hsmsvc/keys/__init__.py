"""Keys: the key store, the hierarchy and the audit chain. Holds only cryptograms."""
