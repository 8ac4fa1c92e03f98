"""gitops-reconciler: deployment plans in Git, authorised from Git history.

The contract is docs/design.md. Data flows one way through the stages of the
core:

    loader -> schema/validate -> authorise -> decide -> execute -> record

Every other module's docstring opens with its place (a test holds it):

- `Stage N, <stage>:` the core, a stage each: 1 load, 2 validate, 3 authorise,
  4 decide, 5 execute, 6 record;
- `Core, shared:` what every stage passes along or raises (`model`, `errors`);
- `Adapter, <edge>:` the edges that keep side effects narrow: git, process,
  store, clock, files, http, watcher;
- `App:` the pass, the service and each command's answer, built on the core;
- `CLI:` the click commands and reporters, a thin shell over all of it.
"""

__version__ = "0.1.0"
