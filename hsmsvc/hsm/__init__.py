"""HSM backends: the only layer that ever holds clear key material."""
