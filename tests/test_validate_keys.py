"""SSH public keys: `parse_public_key` returns only well-formed keys, for every caller.

`validate` reports a malformed key in teams.yaml (the corpus pins those
messages); `config.build_policy`, which the authorisation walk uses, must not
index one either, or a key with the type and nothing else would identify
someone.
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest

from reconciler.adapters.worktree import read_worktree
from reconciler.core.config import build_policy
from reconciler.core.sshkeys import KeyFormatError, fingerprint, parse_public_key
from reconciler.core.validate import validate_snapshot
from tests.configrepo import replace

BOB = "bob: {name: Bob Dev, emails: [bob@example.com]}"


def ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def key_line(*fields: bytes) -> str:
    """An authorized_keys line whose blob holds `fields`, the first being the type."""
    blob = b"".join(ssh_string(field) for field in fields)
    return f"{fields[0].decode()} {base64.b64encode(blob).decode()} someone@example.com"


def ecdsa_point(size: int) -> bytes:
    """An uncompressed point of a curve whose coordinates are `size` bytes."""
    return b"\x04" + b"\x01" * (2 * size)


WELL_FORMED = {
    "ssh-ed25519": key_line(b"ssh-ed25519", b"\x01" * 32),
    "ssh-rsa": key_line(b"ssh-rsa", b"\x01\x00\x01", b"\x00" + b"\xc1" * 256),
    "ecdsa-sha2-nistp256": key_line(b"ecdsa-sha2-nistp256", b"nistp256", ecdsa_point(32)),
    "ecdsa-sha2-nistp384": key_line(b"ecdsa-sha2-nistp384", b"nistp384", ecdsa_point(48)),
    "ecdsa-sha2-nistp521": key_line(b"ecdsa-sha2-nistp521", b"nistp521", ecdsa_point(66)),
    "sk-ssh-ed25519@openssh.com": key_line(b"sk-ssh-ed25519@openssh.com", b"\x01" * 32, b"ssh:"),
    "sk-ecdsa-sha2-nistp256@openssh.com": key_line(
        b"sk-ecdsa-sha2-nistp256@openssh.com", b"nistp256", ecdsa_point(32), b"ssh:"
    ),
}

MALFORMED = {
    "the-type-and-nothing-else": (key_line(b"ssh-ed25519"), "truncated SSH data"),
    "short-ed25519": (
        key_line(b"ssh-ed25519", b"\x01" * 31),
        "an Ed25519 key is 32 bytes, this one is 31",
    ),
    "bytes-after-the-key": (
        key_line(b"ssh-ed25519", b"\x01" * 32, b"more"),
        "unexpected bytes after the key",
    ),
    "rsa-without-a-modulus": (
        key_line(b"ssh-rsa", b"\x01\x00\x01", b""),
        "the RSA key's numbers are missing",
    ),
    "ecdsa-naming-another-curve": (
        key_line(b"ecdsa-sha2-nistp256", b"nistp384", ecdsa_point(48)),
        "the key says curve 'nistp256' but encodes another",
    ),
    "ecdsa-compressed-point": (
        key_line(b"ecdsa-sha2-nistp256", b"nistp256", b"\x02" + b"\x01" * 32),
        "the key's point is not a nistp256 point",
    ),
    "security-key-without-its-application": (
        key_line(b"sk-ssh-ed25519@openssh.com", b"\x01" * 32),
        "truncated SSH data",
    ),
}


@pytest.mark.parametrize("key_type", sorted(WELL_FORMED))
def test_a_well_formed_key_of_every_type_the_schema_allows_parses(key_type: str) -> None:
    key = parse_public_key(WELL_FORMED[key_type])
    assert (key.type, key.comment) == (key_type, "someone@example.com")
    assert key.fingerprint == fingerprint(key.blob)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_key_is_refused_by_parse_public_key(case: str) -> None:
    line, message = MALFORMED[case]
    with pytest.raises(KeyFormatError) as caught:
        parse_public_key(line)
    assert str(caught.value) == message


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_validate_reports_a_malformed_key_where_it_stands(case: str, example_copy: Path) -> None:
    line, message = MALFORMED[case]
    replace(example_copy, "teams.yaml", BOB, BOB.replace("]}", f'], keys: ["{line}"]}}'))
    report = validate_snapshot(read_worktree(example_copy))
    assert [
        (finding.file, finding.line, finding.column, finding.message, finding.hint)
        for finding in report.findings
    ] == [
        (
            "teams.yaml",
            13,
            58,
            f"not a valid SSH public key: {message}",
            "paste the whole line of the .pub file",
        )
    ]


def test_a_key_of_a_type_without_a_known_layout_is_left_to_the_signature_check() -> None:
    # ssh-dss is not in the schema; `signatures` refuses its signatures as unsupported.
    key = parse_public_key(key_line(b"ssh-dss", b"p", b"q", b"g", b"y"))
    assert key.type == "ssh-dss"


def teams_with_keys(**keys: list[str]) -> dict[str, object]:
    return {
        "users": {
            user: {"name": user, "emails": [f"{user}@example.com"], "keys": user_keys}
            for user, user_keys in keys.items()
        },
        "service_accounts": {},
        "infrastructure": {"settings": sorted(keys)},
        "teams": {},
    }


def test_build_policy_indexes_no_malformed_key() -> None:
    truncated = key_line(b"ssh-ed25519")
    good = WELL_FORMED["ssh-ed25519"]
    policy = build_policy(teams_with_keys(mallory=[truncated], root=[good]), [])
    truncated_blob = base64.b64decode(truncated.split()[1])
    assert fingerprint(truncated_blob) not in policy.key_owner
    assert policy.key_owner == {parse_public_key(good).fingerprint: "root"}
