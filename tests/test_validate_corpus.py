"""`reconciler validate` on broken input: one file added or changed, the exact findings printed.

Every case starts from a scratch copy of the seed-story configuration (valid
as shipped), breaks one thing, and states what a person sees: each
`file:line:col: severity: message` line with its hint, and the exit code
(1 with an error, 0 with warnings only). Read a case as input and output side
by side; `content` replaces or adds a whole file, `edit` swaps one exact
string in a file of the example, `setup` does what neither can (symlinks,
20 MB files).

Most cases run in-process with click's CliRunner; those marked
`subprocess=True` run the real command, to prove that the largest and deepest
inputs end in a message, not a crash or a segfault.
"""

# Expected output is written exactly as printed, one finding per line, however long.
# ruff: noqa: E501

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.core.resources import schemas_dir
from tests.configrepo import reconciler, replace, write

QA_PLAN = "plans/2026-11-qa-release.yaml"
DEV_PLAN = "plans/2026-11-dev-build.yaml"
DEVELOPMENT = "environments/development.yaml"
QA = "environments/quality-assurance.yaml"
PRODUCTION = "environments/production.yaml"
TEAMS = "teams.yaml"

ALICE_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZuRvq7OAoU803zWL5Q9LdF784Vd2c4F+WP/YR+UaM1"
    " alice@example.com"
)
SERVICE_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxADb/UPx5lFlvddT+HCwsxiYKwgULLHoVwQxVxe2Nx"
    " reconciler@example.com"
)
BOB = "bob: {name: Bob Dev, emails: [bob@example.com]}"
CAROL_KEY = (
    ', keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMyiEwvwZkZUpU2sXJdd0zLtNJbVazjW+UHe5xCU7CBw'
    ' carol@example.com"]'
)
FIONA_KEY = (
    ', keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAV+CfWIvQwDIW+5G4UkJ8WhjU8scQtqVjd9Dy2Nrrov'
    ' fiona@example.com"]'
)
DEPLOYMENT = """\
environment: {environment}
applications:
  ecommerce: {{version: "1.4.0", plan: 2026-11-dev-build, run: 2026-11-dev-build.1, deployed_at: "2026-11-02T10:00:00Z"}}
"""
# "Billion laughs": nine levels of nine aliases, 9^9 strings once expanded.
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)
# Stands for the directory of the shipped schemas (a checkout's or an installed wheel's).
SHIPPED = "{shipped}"


@dataclass(frozen=True)
class Broken:
    """One broken input: the file it adds or changes (`path`), how, and the output it gets."""

    id: str
    path: str
    expected: str
    content: str | bytes | None = None
    edit: tuple[str, str] | None = None
    setup: Callable[[Path], None] | None = None
    exit_code: int = 1
    subprocess: bool = False

    def apply(self, root: Path) -> None:
        if self.content is not None:
            write(root, self.path, self.content)
        if self.edit is not None:
            replace(root, self.path, *self.edit)
        if self.setup is not None:
            self.setup(root)


def _without_keys(root: Path) -> None:
    replace(root, TEAMS, CAROL_KEY, "")
    replace(root, TEAMS, FIONA_KEY, "")


def _twenty_megabytes(root: Path) -> None:
    write(root, "plans/huge.yaml", b"name: huge\nnotes: |\n" + b"  lol\n" * (20 * 1024 * 1024 // 6))


def _overlapping_approvers(root: Path) -> None:
    # Ravi becomes a tester too: three tech leads and three testers, five people.
    replace(root, TEAMS, "fiona: tester}", "fiona: tester, ravi: tester}")
    replace(root, PRODUCTION, "{role: tech-lead, count: 1}", "{role: tech-lead, count: 3}")
    replace(root, PRODUCTION, "{role: tester, count: 1}", "{role: tester, count: 3}")


def _only_editors_could_approve(root: Path) -> None:
    # Only tech leads edit QA plans: alice or diana edits every one, and may not approve it,
    # so of the three tech leads only two are ever left to give the three approvals.
    replace(root, QA, "plan.edit: [tech-lead, developer]", "plan.edit: [tech-lead]")
    replace(root, QA, "{role: tech-lead, count: 1}", "{role: tech-lead, count: 3}")


def _many_editors_could_approve_only(root: Path) -> None:
    # Eight tech leads edit every QA plan, and all nine must approve: the finding names
    # four editors and counts the rest, so a large organisation's list stays readable.
    leads = [f"lead{number}" for number in range(1, 7)]
    users = "".join(f"  {lead}: {{name: Lead, emails: [{lead}@example.com]}}\n" for lead in leads)
    replace(root, TEAMS, "  # Operations\n", users + "  # Operations\n")
    members = "".join(f", {lead}: tech-lead" for lead in leads)
    replace(
        root, TEAMS, "bob: developer, carol: tester}", f"bob: developer, carol: tester{members}}}"
    )
    replace(root, QA, "plan.edit: [tech-lead, developer]", "plan.edit: [tech-lead]")
    replace(root, QA, "{role: tech-lead, count: 1}", "{role: tech-lead, count: 9}")


def _plans_as_a_file(root: Path) -> None:
    shutil.rmtree(root / "plans")
    write(root, "plans", "name: 2026-11-qa-release\n")


def _teams_as_a_directory(root: Path) -> None:
    (root / TEAMS).unlink()
    write(root, "teams.yaml/teams.yaml", "users: {}\n")


def _symlink(root: Path) -> None:
    os.symlink("2026-11-qa-release.yaml", root / "plans/copy.yaml")


def _teams_symlink(root: Path) -> None:
    os.rename(root / TEAMS, root / "people.yaml")
    os.symlink("people.yaml", root / TEAMS)


CASES = [
    # --- YAML syntax ------------------------------------------------------------------------
    Broken(
        "syntax-tab-indents-a-key",
        "plans/x.yaml",
        content="name: x\n\tstate: ready\n",
        expected="""
        plans/x.yaml:2:1: error: YAML syntax error: found a tab character that violates indentation
          hint: indent with spaces, never tabs
        """,
    ),
    Broken(
        "syntax-tab-indents-a-nested-key",
        "plans/x.yaml",
        content="name: x\napplications:\n\t- {name: ecommerce, version: '1.4.0'}\n",
        expected="""
        plans/x.yaml:3:1: error: YAML syntax error: found a tab character where indentation or a value was expected
          hint: indent with spaces, never tabs
        """,
    ),
    Broken(
        "syntax-unclosed-double-quote",
        "plans/x.yaml",
        content='name: x\nnotes: "checkout\nstate: ready\n',
        expected="""
        plans/x.yaml:2:8: error: YAML syntax error: this quoted string is never closed
          hint: add the closing quote; inside '...' write a quote as '', inside "..." as \\"
        """,
    ),
    Broken(
        "syntax-unclosed-single-quote",
        "plans/x.yaml",
        content="name: x\nnotes: 'checkout\nstate: ready\n",
        expected="""
        plans/x.yaml:2:8: error: YAML syntax error: this quoted string is never closed
          hint: add the closing quote; inside '...' write a quote as '', inside "..." as \\"
        """,
    ),
    Broken(
        "syntax-unclosed-bracket",
        "plans/x.yaml",
        content="name: x\napplications: [ecommerce, customer-portal\nstate: ready\n",
        expected="""
        plans/x.yaml:3:6: error: YAML syntax error: did not find expected ',' or ']'
          hint: close the '[' opened at line 2, column 15 with ']', and separate its items with ','
        """,
    ),
    Broken(
        "syntax-unclosed-brace",
        "plans/x.yaml",
        content="name: x\napplications:\n  - {name: ecommerce, version: '1.4.0'\nstate: ready\n",
        expected="""
        plans/x.yaml:4:1: error: YAML syntax error: did not find expected ',' or '}'
          hint: close the '{' opened at line 3, column 5 with '}', and separate its items with ','
        """,
    ),
    Broken(
        "syntax-key-indented-under-a-value",
        "plans/x.yaml",
        content="name: x\n  target: development\nstate: ready\n",
        expected="""
        plans/x.yaml:2:9: error: YAML syntax error: mapping values are not allowed in this context
          hint: quote a value that contains ': ', or check this line's indentation
        """,
    ),
    Broken(
        "syntax-list-item-indented-inconsistently",
        "plans/x.yaml",
        content="applications:\n  - name: ecommerce\n   version: '1.4.0'\n",
        expected="""
        plans/x.yaml:3:4: error: YAML syntax error: did not find expected '-' indicator
          hint: every item of a list starts with '- ' at the same indentation; check this line
        """,
    ),
    Broken(
        "syntax-text-after-a-closing-quote",
        QA_PLAN,
        edit=("state: ready ", 'state: "ready"y '),
        expected="""
        plans/2026-11-qa-release.yaml:10:15: error: YAML syntax error: did not find expected key
          hint: every key of a mapping starts at the same indentation; check this line, and quote a value that starts with a quote but goes on after it
        """,
    ),
    Broken(
        "syntax-unquoted-colon-in-a-value",
        QA_PLAN,
        edit=("state: ready ", "state: ready: now "),
        expected="""
        plans/2026-11-qa-release.yaml:10:13: error: YAML syntax error: mapping values are not allowed in this context
          hint: quote a value that contains ': ', or check this line's indentation
        """,
    ),
    Broken(
        "syntax-value-starts-with-a-backtick",
        QA_PLAN,
        edit=("notes: |\n  eCommerce", "notes: `eCommerce`\nx: |\n  eCommerce"),
        expected="""
        plans/2026-11-qa-release.yaml:8:8: error: YAML syntax error: found character '`' that cannot start any token
          hint: quote values that start with special characters such as @ ` % or |
        """,
    ),
    # --- what the loader refuses ------------------------------------------------------------
    Broken(
        "duplicate-key",
        QA_PLAN,
        edit=("state: ready ", "state: draft\nstate: ready "),
        expected="""
        plans/2026-11-qa-release.yaml:11:1: error: duplicate key 'state' (first defined at line 10)
          hint: YAML keeps only the last one; remove or rename one of them
        """,
    ),
    Broken(
        "key-1-is-a-number",
        TEAMS,
        edit=("members: {olga: deployment}", "members: {olga: deployment, 1: tester}"),
        expected="""
        teams.yaml:46:33: error: key '1' is read as the number 1, not a string
          hint: quote it: '1'
        """,
    ),
    Broken(
        "key-true-is-a-boolean",
        TEAMS,
        edit=("members: {olga: deployment}", "members: {olga: deployment, true: tester}"),
        expected="""
        teams.yaml:46:33: error: key 'true' is read as the boolean true, not a string
          hint: quote it: 'true'
        """,
    ),
    Broken(
        "alias-bomb-billion-laughs",
        "plans/x.yaml",
        content=ALIAS_BOMB,
        expected="""
        plans/x.yaml:1:4: error: anchor '&a' is not allowed
          hint: anchors and aliases are refused; write the value out in full
        """,
        subprocess=True,
    ),
    Broken(
        "alias-referencing-itself",
        "plans/x.yaml",
        content="name: x\napplications: &apps [*apps]\n",
        expected="""
        plans/x.yaml:2:15: error: anchor '&apps' is not allowed
          hint: anchors and aliases are refused; write the value out in full
        """,
    ),
    Broken(
        "alias-without-anchor",
        "plans/x.yaml",
        content="name: x\napplications: *apps\n",
        expected="""
        plans/x.yaml:2:15: error: alias '*apps' is not allowed
          hint: anchors and aliases are refused (they allow 'billion laughs' bombs); write the value out in full
        """,
    ),
    Broken(
        "nesting-50-levels-of-flow-lists",
        "plans/x.yaml",
        content="name: x\napplications: " + "[" * 50 + "]" * 50 + "\n",
        expected="""
        plans/x.yaml:2:34: error: nesting deeper than 20 levels
          hint: configuration files are shallow; this looks like a mistake or an attack
        """,
        subprocess=True,
    ),
    Broken(
        "nesting-100000-levels-deeper-than-libyaml-survives",
        "plans/x.yaml",
        content="name: x\napplications: " + "[" * 100_000 + "]" * 100_000 + "\n",
        expected="""
        plans/x.yaml:2:34: error: nesting deeper than 20 levels
          hint: configuration files are shallow; this looks like a mistake or an attack
        """,
        subprocess=True,
    ),
    Broken(
        "nesting-50-levels-of-block-mappings",
        "plans/x.yaml",
        content="".join("  " * level + f"level{level}:\n" for level in range(50))
        + "  " * 50
        + "x: 1\n",
        expected="""
        plans/x.yaml:21:41: error: nesting deeper than 20 levels
          hint: configuration files are shallow; this looks like a mistake or an attack
        """,
    ),
    Broken(
        "file-of-20-megabytes",
        "plans/huge.yaml",
        setup=_twenty_megabytes,
        expected="""
        plans/huge.yaml:1:1: error: file is larger than the limit of 4,194,304 bytes
          hint: configuration files are small; split it or remove what does not belong
        """,
        subprocess=True,
    ),
    Broken(
        "bytes-that-are-not-utf8",
        QA_PLAN,
        content=b"name: 2026-11-qa-release\nnotes: caf\xe9\n",
        expected="""
        plans/2026-11-qa-release.yaml:2:11: error: not UTF-8: byte 0xe9 cannot be decoded
          hint: save the file as UTF-8
        """,
    ),
    Broken(
        "utf16-with-byte-order-mark",
        QA_PLAN,
        content="name: 2026-11-qa-release\n".encode("utf-16"),
        expected="""
        plans/2026-11-qa-release.yaml:1:1: error: not UTF-8: the file is UTF-16 (it starts with a UTF-16 byte order mark)
          hint: save the file as UTF-8
        """,
    ),
    Broken(
        "utf16-without-byte-order-mark",
        QA_PLAN,
        content="name: 2026-11-qa-release\n".encode("utf-16-le"),
        expected="""
        plans/2026-11-qa-release.yaml:1:2: error: control character U+0000 is not allowed in YAML
          hint: a NUL byte: the file may be UTF-16; save it as UTF-8
        """,
    ),
    Broken(
        "control-character-bell",
        QA_PLAN,
        edit=("eCommerce: new checkout", "eCommerce: new\x07checkout"),
        expected="""
        plans/2026-11-qa-release.yaml:9:17: error: control character U+0007 is not allowed in YAML
          hint: remove it; write special characters in a quoted string as escapes
        """,
    ),
    Broken(
        "control-character-escape-sequence",
        QA_PLAN,
        edit=("eCommerce: new checkout", "\x1b[31meCommerce: new checkout"),
        expected="""
        plans/2026-11-qa-release.yaml:9:3: error: control character U+001B is not allowed in YAML
          hint: remove it; write special characters in a quoted string as escapes
        """,
    ),
    Broken(
        "next-line-character-would-shift-line-numbers",
        QA_PLAN,
        edit=("state: ready ", "state: ready\x85"),
        expected="""
        plans/2026-11-qa-release.yaml:10:13: error: line break character U+0085 (NEL) is not allowed
          hint: YAML counts it as a new line but editors do not; replace it with a plain new line or a space
        """,
    ),
    Broken(
        "custom-tag-python-object",
        QA_PLAN,
        edit=("state: ready ", "state: !!python/object/apply:os.system ['touch pwned'] "),
        expected="""
        plans/2026-11-qa-release.yaml:10:8: error: tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed
          hint: remove the tag; only plain YAML values are accepted
        """,
    ),
    Broken(
        "custom-tag-local",
        QA_PLAN,
        edit=("state: ready ", "state: !ready ready "),
        expected="""
        plans/2026-11-qa-release.yaml:10:8: error: tag '!ready' is not allowed
          hint: remove the tag; only plain YAML values are accepted
        """,
    ),
    Broken(
        "explicit-int-tag-on-an-empty-value",
        QA_PLAN,
        edit=("state: ready ", "state: !!int "),
        expected="""
        plans/2026-11-qa-release.yaml:10:8: error: '' is not a valid int
          hint: remove the tag, or write a valid int
        """,
    ),
    Broken(
        "explicit-bool-tag-on-a-word",
        QA_PLAN,
        edit=("state: ready ", "state: !!bool ready "),
        expected="""
        plans/2026-11-qa-release.yaml:10:8: error: 'ready' is not a valid bool
          hint: remove the tag, or write a valid bool
        """,
    ),
    Broken(
        "second-yaml-document",
        QA_PLAN,
        edit=("state: ready ", "state: ready\n---\nstate: draft "),
        expected="""
        plans/2026-11-qa-release.yaml:11:1: error: more than one YAML document in this file
          hint: keep one document per file; remove the '---' separator
        """,
    ),
    Broken(
        "merge-key",
        QA_PLAN,
        edit=(
            '  - {name: ecommerce, version: "1.4.0"}',
            '  - {<<: {name: ecommerce}, version: "1.4.0"}',
        ),
        expected="""
        plans/2026-11-qa-release.yaml:6:6: error: merge keys ('<<') are not allowed
          hint: write the keys out in full
        """,
    ),
    Broken(
        "empty-file",
        "plans/x.yaml",
        content="",
        expected="""
        plans/x.yaml:1:1: error: the file is empty
          hint: a plan needs the keys: name, target, applications, state
        """,
    ),
    Broken(
        "file-that-is-a-list",
        "environments/staging.yaml",
        content="- name: staging\n- order: 4\n",
        expected="""
        environments/staging.yaml:1:1: error: expected a mapping, got a list
          hint: an environment needs the keys: name, order, driver
        """,
    ),
    # --- schema: types, keys, values --------------------------------------------------------
    Broken(
        "version-written-as-a-float",
        QA_PLAN,
        edit=('version: "1.4.0"', "version: 1.10"),
        expected="""
        plans/2026-11-qa-release.yaml:6:32: error: applications.0.version: expected a string, got the number 1.1
          hint: '1.10' is read by YAML as a number (the trailing zero is lost: 1.1); quote it: "1.10"
        """,
    ),
    Broken(
        "version-with-a-leading-zero",
        QA_PLAN,
        edit=('version: "1.4.0"', "version: 010"),
        expected="""
        plans/2026-11-qa-release.yaml:6:32: error: `010` reads as the number 8 in YAML 1.1 but as the number 10 in YAML 1.2 (your editor)
          hint: quote it: "010", or write 10
        """,
    ),
    Broken(
        "state-on-is-a-boolean",
        QA_PLAN,
        edit=("state: ready ", "state: on "),
        expected="""
        plans/2026-11-qa-release.yaml:10:8: error: `on` reads as true in YAML 1.1 but as the string "on" in YAML 1.2 (your editor)
          hint: quote it: "on", or write true/false
        """,
    ),
    Broken(
        "signed-commits-yes-is-a-string-to-the-editor",
        PRODUCTION,
        edit=("signed_commits: true ", "signed_commits: yes  "),
        expected="""
        environments/production.yaml:13:19: error: `yes` reads as true in YAML 1.1 but as the string "yes" in YAML 1.2 (your editor)
          hint: quote it: "yes", or write true/false
        """,
    ),
    Broken(
        "state-not-one-of-the-states",
        QA_PLAN,
        edit=("state: ready ", "state: redy "),
        expected="""
        plans/2026-11-qa-release.yaml:10:8: error: state: 'redy' is not allowed
          hint: did you mean 'ready'? (one of: draft, ready, cancelled)
        """,
    ),
    Broken(
        "unknown-key-close-to-a-known-one",
        QA_PLAN,
        edit=("notes: |", "note: |"),
        expected="""
        plans/2026-11-qa-release.yaml:8:1: error: unknown key 'note'
          hint: did you mean 'notes'?
        """,
    ),
    Broken(
        "unknown-key-in-an-application-entry",
        QA_PLAN,
        edit=('{name: ecommerce, version: "1.4.0"}', '{name: ecommerce, version: "1.4.0", tag: x}'),
        expected="""
        plans/2026-11-qa-release.yaml:6:41: error: applications.0: unknown key 'tag'
          hint: allowed keys: action, from, name, version
        """,
    ),
    Broken(
        "required-key-misspelt",
        PRODUCTION,
        edit=("order: 3", "ordr: 3"),
        expected="""
        environments/production.yaml:2:1: error: missing required key 'order'
          hint: add 'order': position in the promotion chain, 1 for the first environment
        environments/production.yaml:3:1: error: unknown key 'ordr'
          hint: did you mean 'order'?
        """,
    ),
    Broken(
        "whole-number-written-as-a-word",
        PRODUCTION,
        edit=("order: 3", "order: three"),
        expected="""
        environments/production.yaml:3:8: error: order: expected a whole number, got the string 'three'
          hint: position in the promotion chain, 1 for the first environment
        """,
    ),
    Broken(
        "boolean-in-quotes",
        PRODUCTION,
        edit=("signed_commits: true", "signed_commits: 'true'"),
        expected="""
        environments/production.yaml:13:19: error: gates.signed_commits: expected true or false, got the string 'true'
          hint: remove the quotes: true
        """,
    ),
    Broken(
        "list-written-as-a-string",
        "plans/x.yaml",
        content="name: x\ntarget: development\napplications: ecommerce\nstate: draft\n",
        expected="""
        plans/x.yaml:3:15: error: applications: expected a list, got the string 'ecommerce'
          hint: write a list: one item per line after '- ', or [first, second]
        """,
    ),
    Broken(
        "time-of-day-unquoted-is-a-number",
        PRODUCTION,
        edit=('to: "16:00"', "to: 16:00"),
        expected="""
        environments/production.yaml:16:55: error: `16:00` reads as the number 960 in YAML 1.1 but as the string "16:00" in YAML 1.2 (your editor)
          hint: quote it: "16:00"
        """,
    ),
    Broken(
        "command-driver-without-argv",
        PRODUCTION,
        edit=("driver: {type: local}", "driver: {type: command}"),
        expected="""
        environments/production.yaml:19:9: error: driver: missing required key 'argv'
          hint: driver type command runs a program: add argv: [program, its arguments]
        """,
    ),
    # --- schema: identifiers and versions that could become paths or shell words ------------
    Broken(
        "identifier-with-dot-dot-slash",
        QA_PLAN,
        edit=("{name: ecommerce", "{name: ../ecommerce"),
        expected="""
        plans/2026-11-qa-release.yaml:6:12: error: applications.0.name: '../ecommerce' is not allowed
          hint: a safe name: lowercase letters and digits, words joined by single '.', '_' or '-'
        """,
    ),
    Broken(
        "identifier-with-a-slash",
        QA_PLAN,
        edit=("target: quality-assurance", "target: quality/assurance"),
        expected="""
        plans/2026-11-qa-release.yaml:4:9: error: target: 'quality/assurance' is not allowed
          hint: a safe name: lowercase letters and digits, words joined by single '.', '_' or '-'
        """,
    ),
    Broken(
        "identifier-with-a-space",
        TEAMS,
        edit=("  customer-portal:\n", "  customer portal:\n"),
        expected="""
        teams.yaml:40:3: error: teams: 'customer portal' is not a valid name
          hint: a safe name: lowercase letters and digits, words joined by single '.', '_' or '-' (it may become a path or reach a driver)
        """,
    ),
    Broken(
        "identifier-with-a-semicolon",
        QA_PLAN,
        edit=("{name: ecommerce", "{name: 'ecommerce;reboot'"),
        expected="""
        plans/2026-11-qa-release.yaml:6:12: error: applications.0.name: 'ecommerce;reboot' is not allowed
          hint: a safe name: lowercase letters and digits, words joined by single '.', '_' or '-'
        """,
    ),
    Broken(
        "version-with-command-substitution",
        QA_PLAN,
        edit=('version: "1.4.0"', 'version: "$(reboot)"'),
        expected="""
        plans/2026-11-qa-release.yaml:6:32: error: applications.0.version: '$(reboot)' is not allowed
          hint: a version, always a quoted string ("1.10", not 1.10): letters and digits joined by single '.', '_', '+' or '-'
        """,
    ),
    Broken(
        "version-with-a-command-after-a-semicolon",
        QA_PLAN,
        edit=('from: "0.6-dev.41"', 'from: "0.6-dev.41; rm -rf /"'),
        expected="""
        plans/2026-11-qa-release.yaml:7:75: error: applications.1.from: '0.6-dev.41; rm -rf /' is not allowed
          hint: a version, always a quoted string ("1.10", not 1.10): letters and digits joined by single '.', '_', '+' or '-'
        """,
    ),
    # --- plans ------------------------------------------------------------------------------
    Broken(
        "tag-and-deploy-without-from",
        QA_PLAN,
        edit=(', from: "0.6-dev.41"', ""),
        expected="""
        plans/2026-11-qa-release.yaml:7:5: error: applications.1: missing required key 'from'
          hint: action: tag-and-deploy tags a version that runs in the source; name it with from: <source version>
        """,
    ),
    Broken(
        "from-without-tag-and-deploy",
        QA_PLAN,
        edit=('version: "1.4.0"}', 'version: "1.4.0", from: "1.4.0-rc.2"}'),
        expected="""
        plans/2026-11-qa-release.yaml:6:41: error: key 'from' is not allowed here
          hint: 'from' names the version to tag; it goes with action: tag-and-deploy
        """,
    ),
    Broken(
        "application-listed-twice",
        QA_PLAN,
        edit=(
            "  - {name: customer-portal",
            '  - {name: ecommerce, version: "1.4.1"}\n  - {name: customer-portal',
        ),
        expected="""
        plans/2026-11-qa-release.yaml:7:12: error: application 'ecommerce' is listed twice
          hint: a plan deploys each application once; remove one entry
        """,
    ),
    Broken(
        "plan-name-not-the-file-name",
        QA_PLAN,
        edit=("name: 2026-11-qa-release", "name: 2026-12-qa-release"),
        expected="""
        plans/2026-11-qa-release.yaml:2:7: error: name '2026-12-qa-release' does not match the file name
          hint: rename the file to plans/2026-12-qa-release.yaml or set name: 2026-11-qa-release
        """,
    ),
    Broken(
        "unknown-target-environment-close-to-a-known-one",
        QA_PLAN,
        edit=("target: quality-assurance", "target: quality-assurence"),
        expected="""
        plans/2026-11-qa-release.yaml:4:9: error: unknown environment 'quality-assurence'
          hint: did you mean 'quality-assurance'?
        """,
    ),
    Broken(
        "unknown-target-environment",
        QA_PLAN,
        edit=("target: quality-assurance", "target: staging"),
        expected="""
        plans/2026-11-qa-release.yaml:4:9: error: unknown environment 'staging'
          hint: add it to environments/ first, or fix the name
        """,
    ),
    Broken(
        "unknown-application",
        QA_PLAN,
        edit=("{name: ecommerce", "{name: ecomerce"),
        expected="""
        plans/2026-11-qa-release.yaml:6:12: error: unknown application 'ecomerce'
          hint: did you mean 'ecommerce'?
        """,
    ),
    Broken(
        "source-is-not-the-targets-promotes-from",
        QA_PLAN,
        edit=("source: development", "source: production"),
        expected="""
        plans/2026-11-qa-release.yaml:3:9: error: 'quality-assurance' promotes from 'development', not 'production'
          hint: set source: development
        """,
    ),
    Broken(
        "source-missing-on-a-plan-into-a-later-environment",
        QA_PLAN,
        edit=("source: development\n", ""),
        expected="""
        plans/2026-11-qa-release.yaml:3:9: error: 'quality-assurance' promotes from 'development', not nothing
          hint: set source: development
        """,
    ),
    Broken(
        "source-on-a-plan-into-the-first-environment",
        DEV_PLAN,
        edit=("target: development", "source: quality-assurance\ntarget: development"),
        expected="""
        plans/2026-11-dev-build.yaml:3:9: error: 'development' is the first environment; it promotes from nothing
          hint: remove source
        """,
    ),
    # --- environments -----------------------------------------------------------------------
    Broken(
        "environment-name-not-the-file-name",
        PRODUCTION,
        edit=("name: production", "name: prod"),
        expected="""
        environments/production.yaml:2:7: error: name 'prod' does not match the file name
          hint: rename the file to environments/prod.yaml or set name: production
        """,
    ),
    Broken(
        "two-environments-with-one-order",
        PRODUCTION,
        edit=("order: 3", "order: 2"),
        expected="""
        environments/production.yaml:3:8: error: order 2 is also used by 'quality-assurance'
          hint: environments form one chain: give each a distinct order
        environments/quality-assurance.yaml:3:8: error: order 2 is also used by 'production'
          hint: environments form one chain: give each a distinct order
        """,
    ),
    Broken(
        "promotion-chain-skips-an-environment",
        PRODUCTION,
        edit=("promotes_from: quality-assurance", "promotes_from: development"),
        expected="""
        environments/production.yaml:4:16: error: 'production' follows 'quality-assurance' in order but promotes from 'development'
          hint: environments form one chain: set promotes_from: quality-assurance
        """,
    ),
    Broken(
        "first-environment-promotes-from-another",
        DEVELOPMENT,
        edit=("order: 1 ", "promotes_from: production\norder: 1 "),
        expected="""
        environments/development.yaml:3:16: error: 'development' comes first (order 1) but promotes from 'production'
          hint: the first environment promotes from nothing: remove promotes_from, or fix order
        """,
    ),
    Broken(
        "unknown-promotes-from",
        PRODUCTION,
        edit=("promotes_from: quality-assurance", "promotes_from: qa"),
        expected="""
        environments/production.yaml:4:16: error: unknown environment 'qa'
          hint: add it to environments/ first, or fix the name
        """,
    ),
    Broken(
        "unknown-role-in-environment-permissions",
        PRODUCTION,
        edit=("plan.deploy: [deployment]", "plan.deploy: [deployer]"),
        expected="""
        environments/production.yaml:8:17: error: permissions.plan.deploy.0: 'deployer' is not allowed
          hint: did you mean 'deployment'? (one of: tech-lead, developer, tester, deployment)
        """,
    ),
    Broken(
        "approval-count-larger-than-the-roles-holders",
        QA,
        edit=("{role: tech-lead, count: 1}", "{role: tech-lead, count: 4}"),
        expected="""
        environments/quality-assurance.yaml:10:15: error: needs 4 approvals by 'tech-lead', but only 3 users hold that role: the gate can never be met
          hint: lower the count, or grant the role to more people in teams.yaml
        """,
    ),
    Broken(
        "approval-rules-need-more-people-than-can-approve",
        PRODUCTION,
        setup=_overlapping_approvers,
        expected="""
        environments/production.yaml:10:3: error: the approval rules need 6 distinct people but only 5 can approve
          hint: lower the counts, or grant the roles to more people
        """,
    ),
    Broken(
        "approval-rules-need-an-editor-of-every-plan-to-approve-it",
        QA,
        setup=_only_editors_could_approve,
        expected="""
        environments/quality-assurance.yaml:10:3: error: every plan into quality-assurance is edited by alice or diana, whose approval of it does not count: the approval rules need 3 approvals but at most 2 can be given
          hint: grant the approving roles to someone who does not edit plans here (a reviewer in a team without applications), or lower the counts
        """,
    ),
    Broken(
        "approval-rules-need-one-of-many-editors-to-approve",
        QA,
        setup=_many_editors_could_approve_only,
        expected="""
        environments/quality-assurance.yaml:10:3: error: every plan into quality-assurance is edited by alice, diana, lead1, lead2 or one of 4 others, whose approval of it does not count: the approval rules need 9 approvals but at most 8 can be given
          hint: grant the approving roles to someone who does not edit plans here (a reviewer in a team without applications), or lower the counts
        """,
    ),
    Broken(
        "approval-role-without-plan-approve",
        QA,
        edit=("{role: tech-lead, count: 1}", "{role: tester, count: 1}"),
        expected="""
        environments/quality-assurance.yaml:10:22: error: approvals by 'tester' are required, but 'tester' does not hold plan.approve here
          hint: add tester to permissions.plan.approve, or change the rule
        """,
    ),
    Broken(
        "signed-commits-but-no-approver-has-a-key",
        TEAMS,
        setup=_without_keys,
        expected="""
        environments/production.yaml:12:7: error: needs 1 approval by 'tester', but no user with an SSH key holds that role: the gate can never be met
          hint: lower the count, add SSH keys for the role's holders, or grant the role to more people in teams.yaml
        """,
    ),
    Broken(
        "unknown-time-zone",
        PRODUCTION,
        edit=("timezone: Europe/Lisbon", "timezone: Europe/Lisboa"),
        expected="""
        environments/production.yaml:16:74: error: unknown time zone 'Europe/Lisboa'
          hint: use an IANA name such as Europe/Lisbon
        """,
    ),
    Broken(
        "approval-ttl-too-long-to-represent",
        PRODUCTION,
        edit=("approval_ttl: 8h", "approval_ttl: " + "999999d" * 1001),
        expected="""
        environments/production.yaml:14:17: error: gates.approval_ttl: is longer than 32 characters
          hint: a duration: a number and a unit, d, h, m or s, e.g. 8h, 90m or 1d12h
        """,
    ),
    Broken(
        "freeze-ends-before-it-starts",
        PRODUCTION,
        edit=('until: "2027-01-04T00:00:00Z"', 'until: "2026-12-04T00:00:00Z"'),
        expected="""
        environments/production.yaml:18:68: error: the freeze ends before it starts
          hint: set 'until' after 'from'
        """,
    ),
    Broken(
        "freeze-on-a-day-that-does-not-exist",
        PRODUCTION,
        edit=('until: "2027-01-04T00:00:00Z"', 'until: "2027-02-30T00:00:00Z"'),
        expected="""
        environments/production.yaml:18:68: error: '2027-02-30T00:00:00Z' is not a real date and time: day is out of range for month
          hint: write a real date and time, e.g. 2026-12-20T00:00:00Z
        """,
    ),
    Broken(
        "window-that-is-never-open",
        PRODUCTION,
        edit=('to: "16:00"', 'to: "09:00"'),
        expected="""
        environments/production.yaml:16:7: error: the window opens and closes at the same time, so it is never open
          hint: set 'to' after 'from'
        """,
    ),
    Broken(
        "driver-not-installed-is-a-warning",
        PRODUCTION,
        edit=("driver: {type: local}", "driver: {type: kubernetes}"),
        expected="""
        environments/production.yaml:19:16: warning: driver 'kubernetes' is not installed here
          hint: install the package that registers it in 'reconciler.drivers', or use local or command
        """,
        exit_code=0,
    ),
    Broken(
        "command-driver-given-a-relative-path",
        PRODUCTION,
        edit=("driver: {type: local}", "driver: {type: command, argv: [scripts/deploy.sh, --all]}"),
        expected="""
        environments/production.yaml:19:32: warning: 'scripts/deploy.sh' is a relative path, and the command runs in an empty folder of its own
          hint: give a command on PATH (e.g. 'deploy.sh') or an absolute path (e.g. '/opt/deploy/deploy.sh'); a script in this repository would run whatever was pushed, authorised or not
        """,
        exit_code=0,
    ),
    Broken(
        "environment-that-does-not-load-is-not-also-called-unknown",
        QA,
        edit=("order: 2", "order: [2"),
        expected="""
        environments/quality-assurance.yaml:4:14: error: YAML syntax error: did not find expected ',' or ']'
          hint: close the '[' opened at line 3, column 8 with ']', and separate its items with ','
        """,
    ),
    Broken(
        "environments-folder-missing",
        "environments",
        setup=lambda root: shutil.rmtree(root / "environments"),
        expected="""
        plans/2026-11-dev-build.yaml:3:9: error: unknown environment 'development'
          hint: add it to environments/ first, or fix the name
        plans/2026-11-qa-release.yaml:4:9: error: unknown environment 'quality-assurance'
          hint: add it to environments/ first, or fix the name
        """,
    ),
    # --- teams.yaml -------------------------------------------------------------------------
    Broken(
        "unknown-user-as-a-member",
        TEAMS,
        edit=("members: {olga: deployment}", "members: {olgaa: deployment}"),
        expected="""
        teams.yaml:46:15: error: unknown user 'olgaa'
          hint: did you mean 'olga'?
        """,
    ),
    Broken(
        "unknown-user-in-settings",
        TEAMS,
        edit=("settings: [root]", "settings: [root, zed]"),
        expected="""
        teams.yaml:33:20: error: unknown user 'zed'
          hint: add it to users: first, or fix the name
        """,
    ),
    Broken(
        "unknown-role-for-a-member",
        TEAMS,
        edit=("members: {olga: deployment}", "members: {olga: ops}"),
        expected="""
        teams.yaml:46:21: error: teams.operations.members.olga: 'ops' is not allowed
          hint: one of: tech-lead, developer, tester, deployment
        """,
    ),
    Broken(
        "application-in-two-teams",
        TEAMS,
        edit=(
            "    members: {ravi: tech-lead}",
            "    applications: [ecommerce]\n    members: {ravi: tech-lead}",
        ),
        expected="""
        teams.yaml:44:20: error: application 'ecommerce' already belongs to team 'ecommerce'
          hint: an application belongs to exactly one team; remove it from one of them
        """,
    ),
    Broken(
        "one-key-listed-for-two-users",
        TEAMS,
        edit=(BOB, BOB.replace("]}", f'], keys: ["{ALICE_KEY}"]}}')),
        expected="""
        teams.yaml:13:58: error: this key already belongs to 'alice'
          hint: one key belongs to one identity; each person needs their own key
        """,
    ),
    Broken(
        "key-that-is-not-base64",
        TEAMS,
        edit=(BOB, BOB.replace("]}", '], keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI bob"]}')),
        expected="""
        teams.yaml:13:58: error: not a valid SSH public key: the key is not valid base64
          hint: paste the whole line of the .pub file
        """,
    ),
    Broken(
        "key-with-the-type-and-nothing-else",
        TEAMS,
        edit=(BOB, BOB.replace("]}", '], keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 bob"]}')),
        expected="""
        teams.yaml:13:58: error: not a valid SSH public key: truncated SSH data
          hint: paste the whole line of the .pub file
        """,
    ),
    Broken(
        "email-shared-by-two-users",
        TEAMS,
        edit=("emails: [bob@example.com]", "emails: [bob@example.com, Alice@Example.com]"),
        expected="""
        teams.yaml:13:50: error: email 'Alice@Example.com' already belongs to 'alice'
          hint: an email identifies one user; remove it from one of them
        """,
    ),
    Broken(
        "no-settings-user-with-a-key",
        TEAMS,
        edit=("settings: [root]", "settings: [bob]"),
        expected="""
        teams.yaml:32:1: error: no settings user has an SSH key, so nobody could ever sign a change to the policy
          hint: add a key to at least one user listed under infrastructure.settings
        """,
    ),
    Broken(
        "service-account-without-a-key",
        TEAMS,
        edit=(", keys: [" + '"' + SERVICE_KEY + '"' + "]}", ", keys: []}"),
        expected="""
        teams.yaml:30:56: error: service_accounts.reconciler.keys: needs at least 1 item
          hint: SSH public keys the reconciler signs its records with; at least one
        """,
    ),
    Broken(
        "service-account-key-that-is-a-users-key",
        TEAMS,
        edit=(SERVICE_KEY, ALICE_KEY),
        expected="""
        teams.yaml:30:57: error: this key already belongs to 'alice'
          hint: one key belongs to one identity; each person needs their own key
        """,
    ),
    # --- the repository's layout ------------------------------------------------------------
    Broken(
        "symlink-in-plans",
        "plans/copy.yaml",
        setup=_symlink,
        expected="""
        plans/copy.yaml:1:1: error: symlinks are refused in the configuration
          hint: replace it with the file itself
        """,
    ),
    Broken(
        "teams-yaml-is-a-symlink",
        TEAMS,
        setup=_teams_symlink,
        expected="""
        teams.yaml:1:1: error: symlinks are refused in the configuration
          hint: replace it with the file itself
        """,
    ),
    Broken(
        "teams-yaml-is-a-directory",
        TEAMS,
        setup=_teams_as_a_directory,
        expected="""
        teams.yaml:1:1: error: teams.yaml is a directory, not a file
          hint: replace it with the file
        """,
    ),
    Broken(
        "plans-is-a-file",
        "plans",
        setup=_plans_as_a_file,
        expected="""
        plans:1:1: error: plans is a file, so nothing in plans/ is read
          hint: plans/ is a directory of files; move this file into it
        """,
    ),
    Broken(
        "gitmodules-file",
        ".gitmodules",
        content='[submodule "vendor"]\n\tpath = plans/vendor\n\turl = https://example.com/x.git\n',
        expected="""
        .gitmodules:1:1: error: submodules are refused in the configuration
          hint: vendor the files instead
        """,
    ),
    Broken(
        "plan-with-the-yml-suffix",
        "plans/2026-12-release.yml",
        content="name: 2026-12-release\n",
        expected="""
        plans/2026-12-release.yml:1:1: error: the reconciler never reads this file: plans/ files end in '.yaml'
          hint: move or rename it
        """,
    ),
    Broken(
        "plan-in-a-sub-folder",
        "plans/2026/release.yaml",
        content="name: release\n",
        expected="""
        plans/2026/release.yaml:1:1: error: the reconciler never reads this file: plans/ holds files directly, not in sub-folders
          hint: move or rename it
        """,
    ),
    Broken(
        "plan-named-as-no-plan-can-be",
        "plans/Release 1.yaml",
        content="name: release-1\n",
        expected="""
        plans/Release 1.yaml:1:1: error: the reconciler never reads this file: plans/ file names are lowercase letters and digits, words joined by single '.', '_' or '-'
          hint: move or rename it
        """,
    ),
    Broken(
        "deployment-record-for-another-environment",
        "deployments/development.yaml",
        content=DEPLOYMENT.format(environment="production"),
        expected="""
        deployments/development.yaml:1:14: error: environment 'production' does not match the file name
          hint: deployments/ is written by the reconciler; do not edit it by hand
        """,
    ),
    Broken(
        "deployment-record-for-an-unknown-environment",
        "deployments/staging.yaml",
        content=DEPLOYMENT.format(environment="staging"),
        expected="""
        deployments/staging.yaml:1:14: error: unknown environment 'staging'
          hint: deployments/ is written by the reconciler; do not edit it by hand
        """,
    ),
    Broken(
        "schema-that-differs-from-the-shipped-one-is-a-warning",
        "schemas/plan.schema.json",
        edit=('"title": ', '"$comment": "edited", "title": '),
        expected=f"""
        schemas/plan.schema.json:1:1: warning: differs from the schema this reconciler ships; validation always uses the shipped one
          hint: refresh it from {SHIPPED}/plan.schema.json
        """,
        exit_code=0,
    ),
]


def test_the_corpus_is_large_and_each_case_is_named_once() -> None:
    assert len(CASES) >= 45
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.fixture
def config(example_copy: Path) -> Path:
    """The example configuration in a real Git repository of its own."""
    subprocess.run(["git", "init", "-q", str(example_copy)], check=True)
    return example_copy


def _validate(root: Path, *, real_process: bool) -> tuple[int, str, str]:
    if real_process:
        result = reconciler("validate", "--repo", root)
        return result.exit_code, result.stdout, result.stderr
    outcome = CliRunner().invoke(main, ["validate", "--repo", str(root)])
    return outcome.exit_code, outcome.stdout, outcome.stderr


# How libyaml words a syntax error is its own to change from release to release; what
# we promise is where it is, that it is a syntax error, and our hint. The problems the
# loader words itself are compared exactly.
_OUR_SYNTAX_PROBLEMS = (
    "this quoted string is never closed",
    "found a tab character where",
    "found character ",
)


def _without_libyamls_words(findings: str) -> str:
    def blank(match: re.Match[str]) -> str:
        if match.group(2).startswith(_OUR_SYNTAX_PROBLEMS):
            return match.group(0)
        return match.group(1) + "(libyaml's words)"

    return re.sub(r"(YAML syntax error: )(.*)", blank, findings)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_validate_reports_the_broken_input_exactly(config: Path, case: Broken) -> None:
    case.apply(config)

    exit_code, stdout, stderr = _validate(config, real_process=case.subprocess)

    *findings, summary = stdout.rstrip("\n").split("\n")
    expected = textwrap.dedent(case.expected).strip("\n").replace(SHIPPED, str(schemas_dir()))
    assert _without_libyamls_words("\n".join(findings)) == _without_libyamls_words(expected)
    assert summary.startswith("valid: " if case.exit_code == 0 else "invalid: ")
    assert (exit_code, stderr) == (case.exit_code, "")


def test_a_gate_met_by_keyless_approvers_a_host_signs_for_is_valid(config: Path) -> None:
    # Production wants one signed tester approval; carol and fiona (the testers) have no
    # key, but the host signs the merges it commits for them (identity: author), which
    # verify attributes to them and access counts: validate must count them too.
    _without_keys(config)
    host_key = "ssh-ed25519 " + base64.b64encode(
        b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))
    ).decode("ascii")
    replace(
        config,
        TEAMS,
        "service_accounts:\n",
        "hosts:\n"
        f'  forge: {{identity: author, emails: [noreply@host.example], keys: ["{host_key}"]}}\n'
        "service_accounts:\n",
    )

    exit_code, stdout, stderr = _validate(config, real_process=False)

    assert (exit_code, stderr) == (0, ""), stdout
    assert stdout.startswith("valid: ")
