"""tandem: one pinned environment, the same trainers locally, in Docker and on Modal."""
