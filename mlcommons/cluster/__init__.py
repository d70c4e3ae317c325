"""The cluster watcher: one acting process at a time reconciles the cluster toward its documents."""
