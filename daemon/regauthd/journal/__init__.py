"""dockerd's auth failures in the journal: recognizing them, following the journal, tying each
failure to its cause."""
