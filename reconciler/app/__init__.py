"""App: the stages wired to the adapters, one call per command (`api`).

The walk (`authorise`), verify-then-decide (`pipeline`), a command's view of a
repository (`session`), the service's pass (`reconcile`, `watch`) and what
people do (`actions`, `init`, `demo`). The CLI calls only this layer's `api`
and hands the result to a reporter.
"""
