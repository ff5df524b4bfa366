"""Built-in providers, one file each."""
