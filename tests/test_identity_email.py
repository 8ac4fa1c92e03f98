"""Which user a commit's email names (`identity.resolve`), as values: teams.yaml's emails
match a commit's whatever the case of their ASCII letters, and no other letter stands
for an ASCII one.

An unsigned change counts under its committer email where its environment needs no
signature, and a host's signed merge under its author email: `str.lower` would take
the Kelvin sign (U+212A) for a `k`, another address to git, a mail server and a host.
"""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core.identity import CommitFacts, resolve
from reconciler.core.model import email_key
from tests import builders

HOST_KEY = builders.public_key("forge")
KELVIN = "\u212a"


def facts(committer: str, author: str | None = None, **signature: Any) -> CommitFacts:
    return CommitFacts(
        commit="c" * 40,
        signature_status=signature.get("status", "unsigned"),
        fingerprint=signature.get("fingerprint"),
        signature_reason="",
        committer_email=committer,
        author_email=author or committer,
        parents=2,
    )


@pytest.mark.parametrize("written", ["erik@example.com", "Erik@Example.COM", "ERIK@EXAMPLE.COM"])
def test_an_unsigned_commit_s_email_names_its_user_whatever_the_case_of_ascii_letters(
    written: str,
) -> None:
    actor = resolve(facts(written), builders.policy(), signature_required=False)
    assert (actor.id, actor.verified) == ("erik", False)


def test_a_kelvin_sign_in_a_committer_email_is_not_the_letter_k() -> None:
    actor = resolve(facts(f"eri{KELVIN}@example.com"), builders.policy(), signature_required=False)
    assert actor.id is None


def test_a_kelvin_sign_in_the_author_of_a_hosts_merge_is_not_the_letter_k() -> None:
    # The host vouches for the author it wrote (a merge it committed and signed): an
    # account whose address only lowers to erik's is not erik.
    teams = builders.seed_teams()
    teams["hosts"] = {
        "forge": {"identity": "author", "emails": ["noreply@host.example"], "keys": [HOST_KEY]}
    }
    policy = builders.policy(teams)
    merge = facts(
        "noreply@host.example",
        f"eri{KELVIN}@example.com",
        status="good",
        fingerprint=builders.fingerprint("forge"),
    )
    control = facts(
        "noreply@host.example",
        "erik@example.com",
        status="good",
        fingerprint=builders.fingerprint("forge"),
    )
    assert resolve(control, policy, signature_required=True).id == "erik"
    assert resolve(merge, policy, signature_required=True).id is None


def test_an_email_key_folds_ascii_letters_alone() -> None:
    assert email_key("Erik@Example.COM") == "erik@example.com"
    assert email_key(f"eri{KELVIN}@EXAMPLE.com") == f"eri{KELVIN}@example.com"
    assert email_key("\u00c9lise@example.com") == "\u00c9lise@example.com"
