"""Release targets, one file each."""
