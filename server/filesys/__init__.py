"""The disk side of files by reference: roots, a bounded glob walk, credential checks, and opening without links."""
