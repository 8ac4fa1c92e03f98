"""App: the policy an effective state describes (its teams.yaml and environments/).

Called by the walker (`authorise`), which builds one after every landing that changes
the settings, and by `access` when the state already holds the branch's tip: that
answer needs the policy alone, so it loads neither the walker nor the checks a walk
makes (`Session.policy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.statestore import StateStore
from reconciler.app.kept import parsed_documents
from reconciler.core.config import build_environment, build_policy, disowned
from reconciler.core.fields import CONTENT, teams_data, value
from reconciler.core.layout import TEAMS_FILE, place
from reconciler.core.model import Policy
from reconciler.core.openpgp import Keyring


def policy_from(
    effective: Mapping[str, Mapping[str, str]],
    repo: GitRepo,
    now: datetime | None = None,
    store: StateStore | None = None,
) -> Policy:
    """The policy the effective teams.yaml and environments/ describe, at `now` (the time
    of judging, for OpenPGP keys' expiry; None: expiry not judged). With `store`, the
    environment files' parsed YAML it keeps by blob (`kept.parsed`) is read rather than
    parsed, and what had to be parsed is kept."""
    teams = effective.get(TEAMS_FILE, {})
    files = {
        path: value(fields, CONTENT)
        for path, fields in effective.items()
        # The prefix first: the effective state holds every plan too.
        if path.startswith("environments/")
        and place(path).kind == "environment"
        and CONTENT in fields
    }
    found = parsed_documents(store, repo, files, "environments")
    environments = [build_environment(data) for data in found.values()]
    return build_policy(teams_data(teams), environments, now)


def learn_keys(keyring: Keyring, policy: Policy) -> Policy:
    """Add the certificates `policy` lists to `keyring`, so OpenPGP signatures are checked
    with them too; `policy` as it may be used: a key two certificates met so far list is
    nobody's."""
    identities = (policy.users, policy.service_accounts, policy.hosts)
    keyring.add(key for ids in identities for i in ids.values() for key in i.keys)
    return disowned(policy, keyring.shared(policy.key_owner))
