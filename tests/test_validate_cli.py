"""`reconciler validate` as a command: exit codes, output formats, PATH filtering, where it looks.

The broken-input corpus (`test_validate_corpus.py`) pins each message; this
file pins the command around them. Tests run in-process with click's
CliRunner, except where the working directory or the real process matters.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.core import schema
from tests.configrepo import reconciler, replace, write

QA_PLAN = "plans/2026-11-qa-release.yaml"
PRODUCTION = "environments/production.yaml"
VALID_SUMMARY = "valid: 10 file(s) checked, 0 error(s), 0 warning(s)\n"


@pytest.fixture
def config(example_copy: Path) -> Path:
    """The example configuration in a real Git repository of its own."""
    subprocess.run(["git", "init", "-q", str(example_copy)], check=True)
    return example_copy


def validate(*args: str | Path) -> Result:
    return CliRunner().invoke(main, ["validate", *map(str, args)])


def break_the_qa_plan(root: Path) -> None:
    """One error: plans/2026-11-qa-release.yaml:6:12 unknown application 'ecomerce'."""
    replace(root, QA_PLAN, "{name: ecommerce", "{name: ecomerce")


def break_production(root: Path) -> None:
    """One error: environments/production.yaml:3:8 order is not a whole number."""
    replace(root, PRODUCTION, "order: 3", "order: three")


def findings(result: Result) -> list[dict[str, Any]]:
    report: dict[str, Any] = json.loads(result.stdout)
    found: list[dict[str, Any]] = report["findings"]
    return found


# --- exit codes --------------------------------------------------------------------------------


def test_the_example_configuration_is_valid_and_exits_0(config: Path) -> None:
    result = validate("--repo", config)
    assert (result.exit_code, result.stdout, result.stderr) == (0, VALID_SUMMARY, "")


def test_a_finding_exits_1(config: Path) -> None:
    break_the_qa_plan(config)
    result = validate("--repo", config)
    assert result.exit_code == 1
    assert result.stdout.endswith("invalid: 10 file(s) checked, 1 error(s), 0 warning(s)\n")


def test_warnings_alone_exit_0(config: Path) -> None:
    replace(config, PRODUCTION, "driver: {type: local}", "driver: {type: kubernetes}")
    result = validate("--repo", config)
    assert result.exit_code == 0
    assert result.stdout.endswith("valid: 10 file(s) checked, 0 error(s), 1 warning(s)\n")


def test_an_unknown_option_is_a_usage_error_exiting_2(config: Path) -> None:
    result = validate("--repo", config, "--strict")
    assert result.exit_code == 2
    assert "No such option '--strict'" in result.stderr


def test_an_unknown_format_is_a_usage_error_exiting_2(config: Path) -> None:
    result = validate("--repo", config, "--format", "xml")
    assert result.exit_code == 2
    assert "'xml' is not one of 'text', 'json', 'github'" in result.stderr


def test_a_path_outside_the_repository_is_a_usage_error_exiting_2(
    config: Path, tmp_path: Path
) -> None:
    outside = write(tmp_path, "elsewhere/plan.yaml", "name: x\n")
    result = validate("--repo", config, outside)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: {outside} is outside the repository {config}\n"
        "  hint: name a file or folder inside it, or pass --repo with the repository "
        "that holds it\n"
    )


def test_a_path_that_is_not_configuration_is_skipped_with_a_note(config: Path) -> None:
    # What a hook that names every changed file passes: none of it is configuration.
    break_the_qa_plan(config)
    named = [
        write(config, "README.md", "# configuration\n"),
        write(config, "plans/.gitkeep", ""),
        write(config, ".github/workflows/reconciler.yml", "name: reconciler\n"),
    ]
    result = validate("--repo", config, *named)
    assert (result.exit_code, result.stdout) == (
        0,
        "valid: 0 file(s) checked, 0 error(s), 0 warning(s)\n",
    )
    assert result.stderr == (
        "note: not configuration, so not validated: "
        "README.md, plans/.gitkeep, .github/workflows/reconciler.yml\n"
    )


def test_skipped_paths_leave_the_report_on_the_configuration_named_with_them(
    config: Path,
) -> None:
    break_the_qa_plan(config)
    readme = write(config, "README.md", "# configuration\n")
    result = validate("--repo", config, "--format", "json", readme, config / QA_PLAN)
    assert result.exit_code == 1
    assert [finding["file"] for finding in findings(result)] == [QA_PLAN]
    assert result.stderr == "note: not configuration, so not validated: README.md\n"


def test_the_note_names_five_skipped_paths_and_counts_the_rest(config: Path) -> None:
    named = [write(config, f"docs/{index}.md", "") for index in range(7)]
    result = validate("--repo", config, *named)
    assert result.exit_code == 0
    assert result.stderr == (
        "note: not configuration, so not validated: "
        "docs/0.md, docs/1.md, docs/2.md, docs/3.md, docs/4.md and 2 more\n"
    )


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("plans/next.yml", "plans/ files end in '.yaml'"),
        ("plans/drafts/next.yaml", "plans/ holds files directly, not in sub-folders"),
        ("environments/Staging.yaml", "environments/ file names are lowercase letters"),
    ],
)
def test_a_misplaced_file_named_as_a_path_is_reported_not_skipped(
    config: Path, path: str, why: str
) -> None:
    named = write(config, path, "name: next\n")
    result = validate("--repo", config, "--format", "json", named)
    assert (result.exit_code, result.stderr) == (1, "")
    [finding] = findings(result)
    assert finding["file"] == path
    assert finding["message"].startswith(f"the reconciler never reads this file: {why}")


def test_a_plan_in_a_singular_plan_folder_is_warned_of_not_ignored(config: Path) -> None:
    # plan/y.yaml was skipped in silence: validate said "valid" and the plan never ran.
    write(config, "plan/y.yaml", (config / QA_PLAN).read_text())
    write(config, "teams.yml", "users: {}\n")
    write(config, "docker-compose.yaml", "services: {}\n")  # not configuration, no warning
    result = validate("--repo", config, "--format", "json")
    assert result.exit_code == 0, result.output
    warned = [
        (finding["file"], finding["severity"], finding["hint"]) for finding in findings(result)
    ]
    assert warned == [
        ("plan/y.yaml", "warning", "move it to plans/y.yaml, or out of the way"),
        ("teams.yml", "warning", "move it to teams.yaml, or out of the way"),
    ]
    named = validate("--repo", config, "--format", "json", "plan/y.yaml")
    assert [finding["file"] for finding in findings(named)] == ["plan/y.yaml"]


def test_a_path_that_does_not_exist_is_a_usage_error_exiting_2(config: Path) -> None:
    result = validate("--repo", config, config / "plans/missing.yaml")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_a_repo_that_is_not_a_directory_is_a_usage_error_exiting_2(config: Path) -> None:
    result = validate("--repo", config / "teams.yaml")
    assert result.exit_code == 2
    assert "is a file" in result.stderr


# --- --format json -----------------------------------------------------------------------------


def test_json_output_of_a_valid_configuration(config: Path) -> None:
    result = validate("--repo", config, "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "valid": True,
        "files_checked": 10,
        "errors": 0,
        "warnings": 0,
        "findings": [],
    }


def test_json_output_carries_every_field_of_every_finding(config: Path) -> None:
    break_the_qa_plan(config)
    replace(config, PRODUCTION, "driver: {type: local}", "driver: {type: kubernetes}")
    result = validate("--repo", config, "--format", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "valid": False,
        "files_checked": 10,
        "errors": 1,
        "warnings": 1,
        "findings": [
            {
                "file": PRODUCTION,
                "line": 19,
                "column": 16,
                "severity": "warning",
                "message": "driver 'kubernetes' is not installed here",
                "hint": "install the package that registers it in 'reconciler.drivers', "
                "or use local or command",
            },
            {
                "file": QA_PLAN,
                "line": 6,
                "column": 12,
                "severity": "error",
                "message": "unknown application 'ecomerce'",
                "hint": "did you mean 'ecommerce'?",
            },
        ],
    }


def test_json_output_reports_a_file_that_does_not_load(config: Path) -> None:
    write(
        config, "plans/x.yaml", "name: x\ntarget: development\napplications: []\nstate: !!int x\n"
    )
    result = validate("--repo", config, "--format", "json")
    assert result.exit_code == 1
    assert findings(result) == [
        {
            "file": "plans/x.yaml",
            "line": 4,
            "column": 8,
            "severity": "error",
            "message": "'x' is not a valid int",
            "hint": "remove the tag, or write a valid int",
        }
    ]


# --- --format github ---------------------------------------------------------------------------


def test_github_format_prints_one_workflow_annotation_per_finding(config: Path) -> None:
    break_the_qa_plan(config)
    break_production(config)
    result = validate("--repo", config, "--format", "github")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "::error file=environments/production.yaml,line=3,col=8,title=reconciler validate::"
        "order: expected a whole number, got the string 'three'"
        "%0Aposition in the promotion chain, 1 for the first environment",
        "::error file=plans/2026-11-qa-release.yaml,line=6,col=12,title=reconciler validate::"
        "unknown application 'ecomerce'%0Adid you mean 'ecommerce'?",
    ]


def test_github_format_annotates_warnings_as_warnings(config: Path) -> None:
    replace(config, PRODUCTION, "driver: {type: local}", "driver: {type: kubernetes}")
    result = validate("--repo", config, "--format", "github")
    assert result.exit_code == 0
    assert result.stdout.startswith(
        "::warning file=environments/production.yaml,line=19,col=16,title=reconciler validate::"
    )


def test_github_format_escapes_what_would_end_the_annotation(config: Path) -> None:
    # A file name with a comma (no plan's: the file is never read, and says so),
    # and a message with a percent sign and a colon.
    write(config, "plans/a,b.yaml", "name: a\n")
    write(config, "plans/a.yaml", "name: '100%'\n")
    result = validate(
        "--repo", config, "--format", "github", config / "plans/a,b.yaml", config / "plans/a.yaml"
    )
    assert "::error file=plans/a%2Cb.yaml,line=1,col=1," in result.stdout
    assert "name: '100%25' is not allowed" in result.stdout


def test_github_format_prints_nothing_for_a_valid_configuration(config: Path) -> None:
    result = validate("--repo", config, "--format", "github")
    assert (result.exit_code, result.stdout) == (0, "")


# --- PATH filtering ----------------------------------------------------------------------------


def test_paths_limit_the_report_to_those_files(config: Path) -> None:
    break_the_qa_plan(config)
    break_production(config)
    result = validate("--repo", config, "--format", "json", config / QA_PLAN)
    assert result.exit_code == 1
    assert [finding["file"] for finding in findings(result)] == [QA_PLAN]


def test_a_path_without_findings_is_valid_while_other_files_are_broken(config: Path) -> None:
    break_production(config)
    result = validate("--repo", config, config / QA_PLAN)
    assert (result.exit_code, result.stdout) == (
        0,
        "valid: 1 file(s) checked, 0 error(s), 0 warning(s)\n",
    )


def test_other_files_still_serve_as_context_for_the_given_path(config: Path) -> None:
    # The plan's target exists only in environments/, its application only in teams.yaml.
    write(
        config,
        "plans/2026-12-release.yaml",
        "name: 2026-12-release\nsource: quality-assurance\ntarget: production\n"
        "applications: [{name: customer-portal, version: '0.6'}]\nstate: draft\n",
    )
    assert validate("--repo", config, config / "plans/2026-12-release.yaml").exit_code == 0
    replace(config, "teams.yaml", "applications: [customer-portal]", "applications: [portal]")
    result = validate("--repo", config, "--format", "json", config / "plans/2026-12-release.yaml")
    assert [(finding["file"], finding["message"]) for finding in findings(result)] == [
        ("plans/2026-12-release.yaml", "unknown application 'customer-portal'")
    ]


def test_a_directory_path_reports_on_every_file_in_it(config: Path) -> None:
    break_the_qa_plan(config)
    break_production(config)
    write(config, "plans/x.yaml", "name: x\n")
    result = validate("--repo", config, "--format", "json", config / "plans")
    assert sorted({finding["file"] for finding in findings(result)}) == [QA_PLAN, "plans/x.yaml"]


def test_the_repository_root_as_a_path_reports_on_everything(config: Path) -> None:
    break_the_qa_plan(config)
    break_production(config)
    result = validate("--repo", config, "--format", "json", config)
    assert [finding["file"] for finding in findings(result)] == [PRODUCTION, QA_PLAN]


def test_a_symlink_named_as_a_path_is_refused_not_followed(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (config / "plans/copy.yaml").symlink_to("2026-11-qa-release.yaml")
    refusal = {
        "file": "plans/copy.yaml",
        "line": 1,
        "column": 1,
        "severity": "error",
        "message": "symlinks are refused in the configuration",
        "hint": "replace it with the file itself",
    }
    result = validate("--repo", config, "--format", "json", config / "plans/copy.yaml")
    assert (result.exit_code, findings(result)) == (1, [refusal])
    monkeypatch.chdir(config / "plans")
    result = validate("--format", "json", "copy.yaml")
    assert (result.exit_code, findings(result)) == (1, [refusal])


def test_a_dangling_symlink_named_as_a_path_is_refused_as_a_symlink(config: Path) -> None:
    (config / "plans/gone.yaml").symlink_to("nowhere.yaml")
    result = validate("--repo", config, "--format", "json", config / "plans/gone.yaml")
    assert result.exit_code == 1
    assert [(finding["file"], finding["message"]) for finding in findings(result)] == [
        ("plans/gone.yaml", "symlinks are refused in the configuration")
    ]


def test_a_symlink_to_a_file_outside_the_repository_is_refused_not_a_usage_error(
    config: Path, tmp_path: Path
) -> None:
    outside = write(tmp_path, "elsewhere/plan.yaml", "name: x\n")
    (config / "plans/outside.yaml").symlink_to(outside)
    result = validate("--repo", config, config / "plans/outside.yaml")
    assert result.exit_code == 1
    assert result.stdout.startswith(
        "plans/outside.yaml:1:1: error: symlinks are refused in the configuration\n"
    )


# --- where it looks ----------------------------------------------------------------------------


def test_from_a_subdirectory_it_validates_the_whole_repository(config: Path) -> None:
    break_the_qa_plan(config)
    break_production(config)
    from_root = reconciler("validate", "--repo", config)
    from_inside = reconciler("validate", cwd=config / "environments")
    assert from_inside == from_root
    assert from_inside.exit_code == 1
    assert from_inside.stdout.splitlines()[0].startswith("environments/production.yaml:3:8: ")


def test_from_a_subdirectory_paths_are_relative_to_it(config: Path) -> None:
    break_the_qa_plan(config)
    break_production(config)
    result = reconciler(
        "validate", "--format", "json", "2026-11-qa-release.yaml", cwd=config / "plans"
    )
    assert [finding["file"] for finding in result.json()["findings"]] == [QA_PLAN]


def test_with_repo_from_outside_it_relative_paths_start_at_the_repository_root(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_the_qa_plan(config)
    break_production(config)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = validate("--repo", config, "--format", "json", QA_PLAN)
    assert result.exit_code == 1
    assert [finding["file"] for finding in findings(result)] == [QA_PLAN]


def test_with_repo_from_inside_it_relative_paths_start_at_the_current_directory(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_the_qa_plan(config)
    break_production(config)
    monkeypatch.chdir(config / "environments")
    result = validate("--repo", config, "--format", "json", "production.yaml")
    assert [finding["file"] for finding in findings(result)] == [PRODUCTION]
    # plans/ is not below environments/: no root-relative fallback from inside.
    result = validate("--repo", config, QA_PLAN)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: {QA_PLAN} does not exist\n"
        f"  hint: a relative PATH starts at the current directory, {config / 'environments'}\n"
    )


def test_a_missing_relative_path_from_outside_names_where_it_was_looked_for(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = validate("--repo", config, "plans/missing.yaml")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "error: plans/missing.yaml does not exist\n"
        f"  hint: run from outside the repository, a relative PATH starts at its root, {config}\n"
    )


def test_a_relative_path_that_leaves_the_repository_is_a_usage_error(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "elsewhere/plan.yaml", "name: x\n")
    monkeypatch.chdir(config / "plans")
    result = validate("../../elsewhere/plan.yaml")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: ../../elsewhere/plan.yaml is outside the repository {config}\n"
        "  hint: name a file or folder inside it, or pass --repo with the repository "
        "that holds it\n"
    )


def test_the_help_says_where_relative_paths_start() -> None:
    result = CliRunner().invoke(main, ["validate", "--help"])
    assert result.exit_code == 0
    help_text = " ".join(result.stdout.split())
    assert (
        "A relative PATH is taken from the current directory when that is inside the "
        "repository, else from the repository's root" in help_text
    )
    assert "a PATH outside the repository is a usage error" in help_text


def test_repo_given_as_a_subdirectory_means_its_repository(config: Path) -> None:
    break_the_qa_plan(config)
    assert validate("--repo", config / "plans").stdout == validate("--repo", config).stdout


def test_repo_is_read_instead_of_the_current_directory(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(["git", "init", "-q", str(elsewhere)], check=True)
    monkeypatch.chdir(elsewhere)
    break_the_qa_plan(config)
    result = validate("--repo", config)
    assert result.stdout.startswith(f"{QA_PLAN}:6:12: error: unknown application 'ecomerce'\n")


def test_an_empty_repository_is_invalid_because_teams_yaml_is_missing(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    result = validate("--repo", tmp_path, "--format", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "valid": False,
        "files_checked": 0,
        "errors": 1,
        "warnings": 0,
        "findings": [
            {
                "file": "teams.yaml",
                "line": 1,
                "column": 1,
                "severity": "error",
                "message": "teams.yaml is missing",
                "hint": "every configuration repository needs one; see `reconciler init`",
            }
        ],
    }


def test_a_bare_repository_is_a_usage_error_exiting_2(config: Path, tmp_path: Path) -> None:
    subprocess.run(["git", "-C", str(config), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(config), "commit", "-q", "-m", "seed"], check=True)
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(config), str(bare)], check=True)
    result = validate("--repo", bare)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: {bare} is a bare repository: validate checks a working tree\n"
        f"  hint: validate a clone of it (git clone {bare}), "
        f"or check its history with `reconciler verify --repo {bare}`\n"
    )


# --- collecting and ordering -------------------------------------------------------------------


def test_every_broken_file_is_reported_not_only_the_first(config: Path) -> None:
    break_the_qa_plan(config)
    break_production(config)
    write(config, "plans/x.yaml", "name: x\n\tstate: ready\n")
    write(config, "deployments/development.yaml", "environment: [\n")
    replace(config, "teams.yaml", "settings: [root]", "settings: [bob]")
    result = validate("--repo", config, "--format", "json")
    assert [(finding["file"], finding["line"]) for finding in findings(result)] == [
        ("deployments/development.yaml", 2),
        (PRODUCTION, 3),
        (QA_PLAN, 6),
        ("plans/x.yaml", 2),
        ("teams.yaml", 32),
    ]
    assert json.loads(result.stdout)["errors"] == 5


def test_a_schema_error_in_a_plan_does_not_hide_its_cross_file_errors(config: Path) -> None:
    # It reported the bad version alone, then the unknown environment and application
    # after the fix: every finding at once.
    write(
        config,
        "plans/x.yaml",
        "name: x\nsource: development\ntarget: staging\n"
        'applications:\n  - {name: ecomerce, version: "1..4"}\nstate: ready\n',
    )
    result = validate("--repo", config, "--format", "json", "plans/x.yaml")
    assert [(finding["line"], finding["column"]) for finding in findings(result)] == [
        (3, 9),  # unknown environment 'staging'
        (5, 12),  # unknown application 'ecomerce'
        (5, 31),  # the version
    ]
    messages = [finding["message"] for finding in findings(result)]
    assert messages[:2] == ["unknown environment 'staging'", "unknown application 'ecomerce'"]


def test_a_value_that_breaks_the_schema_is_not_also_looked_up_in_other_files(
    config: Path,
) -> None:
    # 'Staging!' is no name at all: its schema finding says so, and no "unknown environment".
    write(
        config,
        "plans/x.yaml",
        "name: x\nsource: development\ntarget: Staging!\n"
        'applications:\n  - {name: Ecomerce, version: "1.4"}\nstate: ready\n',
    )
    result = validate("--repo", config, "--format", "json", "plans/x.yaml")
    assert [(finding["line"], finding["column"]) for finding in findings(result)] == [
        (3, 9),
        (5, 12),
    ]
    assert not any("unknown" in finding["message"] for finding in findings(result))


def test_findings_are_sorted_by_file_then_line_then_column(config: Path) -> None:
    write(
        config,
        "plans/2026-12-release.yaml",
        "name: 2026-12-release\n"
        "target: production\n"
        "applications:\n"
        "  - {name: portal, version: '2'}\n"
        "  - {name: shop, version: '1'}\n"
        "state: ready\n"
        "source: development\n",
    )
    replace(config, QA_PLAN, "{name: ecommerce", "{name: ecomerce")
    replace(config, QA_PLAN, "{name: customer-portal", "{name: customer-portl")
    result = validate("--repo", config, "--format", "json")
    located = [
        (finding["file"], finding["line"], finding["column"]) for finding in findings(result)
    ]
    assert located == [
        (QA_PLAN, 6, 12),
        (QA_PLAN, 7, 12),
        ("plans/2026-12-release.yaml", 4, 12),
        ("plans/2026-12-release.yaml", 5, 12),
        ("plans/2026-12-release.yaml", 7, 9),
    ]
    assert located == sorted(located)


def test_text_output_ends_with_a_summary_of_what_was_found(config: Path) -> None:
    break_the_qa_plan(config)
    break_production(config)
    replace(config, "schemas/plan.schema.json", '"title": ', '"$comment": "edited", "title": ')
    result = validate("--repo", config)
    assert result.stdout.splitlines()[-1] == (
        "invalid: 10 file(s) checked, 2 error(s), 1 warning(s)"
    )


# --- identities --------------------------------------------------------------------------------


def test_an_id_that_is_both_a_user_and_a_service_account_is_a_finding_at_the_second(
    config: Path,
) -> None:
    # identity.resolve looks users up first: the service account's key would act as alice.
    replace(
        config,
        "teams.yaml",
        "  reconciler: {emails: [reconciler@",
        "  alice: {emails: [reconciler@",
    )
    result = validate("--repo", config, "--format", "json")
    assert result.exit_code == 1
    assert findings(result) == [
        {
            "file": "teams.yaml",
            "line": 30,
            "column": 3,
            "severity": "error",
            "message": "'alice' is in both users and service_accounts",
            "hint": "ids must be unique across users, service accounts and hosts; rename one",
        }
    ]


def test_a_repositorys_loosened_schema_does_not_loosen_validation(config: Path) -> None:
    # An editor's schema that lets a plan carry anything: validate still uses the shipped one.
    replace(config, "schemas/plan.schema.json", '"additionalProperties": false', '"x": 1')
    replace(config, QA_PLAN, "state: ready", "state: ready\npriority: skip-the-gates")
    result = validate("--repo", config, "--format", "json")
    assert result.exit_code == 1, result.stdout
    assert [(item["file"], item["severity"]) for item in findings(result)] == [
        (QA_PLAN, "error"),
        ("schemas/plan.schema.json", "warning"),
    ]
    assert "priority" in findings(result)[0]["message"]


def test_a_refusal_the_explanation_cannot_place_is_an_error_at_line_1_never_a_pass(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Rust validator's verdict decides; when python-jsonschema's walk, which only
    # explains it, finds nothing (as its `$` once did for "9.9\\n"), the file is still refused.
    import jsonschema  # noqa: PLC0415 - as the reconciler imports it, only when needed

    monkeypatch.setattr(schema, "_detailed", lambda kind: jsonschema.Draft202012Validator(True))
    replace(config, QA_PLAN, "state: ready", "state: ready\npriority: skip-the-gates")
    result = validate("--repo", config, "--format", "json")
    assert (result.exit_code, result.stderr) == (1, "")
    [finding] = findings(result)
    assert (finding["file"], finding["line"], finding["severity"], finding["message"]) == (
        QA_PLAN,
        1,
        "error",
        "the document does not match its schema",
    )
    assert "schemas/plan.schema.json" in finding["hint"]
    assert "report" in finding["hint"]


def test_validate_paths_counts_the_files_it_checked_not_the_whole_repository(
    config: Path,
) -> None:
    one = validate("--repo", config, QA_PLAN, "--format", "json")
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout)["files_checked"] == 1
    folder = validate("--repo", config, "environments")
    assert folder.exit_code == 0, folder.output
    environments = len(list((config / "environments").glob("*.yaml")))
    assert folder.stdout == f"valid: {environments} file(s) checked, 0 error(s), 0 warning(s)\n"
    assert environments > 1


def test_validate_outside_a_repository_is_a_usage_error_as_for_every_command(
    tmp_path: Path,
) -> None:
    # Not "teams.yaml is missing": the folder is the wrong one, not a broken configuration.
    result = reconciler("validate", cwd=tmp_path)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: {tmp_path} is not a Git repository\n"
        "  hint: pass --repo with the configuration repository's path\n"
    )
    as_json = reconciler("validate", "--format", "json", cwd=tmp_path)
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["error"]["exit_code"] == 2


def test_a_plain_folder_holding_a_configuration_is_still_validated(
    example_copy: Path,
) -> None:
    # An export or a checkout without .git: the configuration is there, so it is checked.
    result = validate("--repo", example_copy)
    assert (result.exit_code, result.stdout) == (0, VALID_SUMMARY)
