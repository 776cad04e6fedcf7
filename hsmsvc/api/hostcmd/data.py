"""Host commands: this family lands in its own commit."""
