"""gitops-reconciler: deployment plans in Git, authorised from Git history.

Data flows one way, one module per stage:

    loader -> schema/validate -> authorise -> decide -> execute -> record

`model` holds the immutable domain types every stage passes along, `errors`
the one error family, and the edges (`gitrepo` for Git, `process` for
subprocesses, `worktree` for the file system) keep side effects narrow. The
`cli` package is a thin shell over all of it.
"""

__version__ = "0.1.0"
