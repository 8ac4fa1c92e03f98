"""Adapters: the edges the core never touches.

Git (`gitrepo` and its pure helpers), processes (`process`), the state store
(SQLite, `statestore`), signing keys (`signing`), drivers, the file watcher,
the webhook's HTTP server, the clock and the files a user names.
"""
