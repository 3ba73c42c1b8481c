"""Infrastructure: storage, the one Redis client, metrics, logs, process lifetime (shutdown,
GC freeze), per-process singletons and which backends are on. Imports neither hub.http nor an app."""
