"""Commits as GitHub, GitLab and Gitea/Forgejo make them when a pull request is merged.

Each host writes its merges on its server, in a shape of its own: how many
parents, whose name is the author, the committer (the host itself, as its
signing configuration names it), the signature (the host's key) and the
message. `HostServer` makes those exact commits in a test repository and puts
them on main, as the host's push would:

    github = HostServer(repo, hosts(people, gpg)["github"])
    github.merge_commit(people.olga, "release")     # "Create a merge commit"
    github.squash(people.alice, "release")          # "Squash and merge"
    github.rebase("release")                        # "Rebase and merge"

Each host signs as it does for real: GitHub with its web-flow key, an OpenPGP
RSA 4096 key (made by gpg, the session's `gpg` fixture); GitLab with its
instance's SSH key (SSH since 17.x), Forgejo with an SSH key
(`[repository.signing] FORMAT = ssh`), both made by ssh-keygen; and Gitea, whose
messages are Forgejo's, with an OpenPGP key of its own (its signing key may be
either kind).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from tests.gpgkeys import GpgKey, GpgKeys
from tests.people import People, Person, make_key, seed_teams
from tests.repositories import ConfigRepo

GitOptions = tuple[list[str], dict[str, str]]  # -c options and environment of a git command


class Signer(Protocol):
    """A host's signing key, as git signs with it and as git verifies it."""

    format: ClassVar[str]  # gpg.format: "ssh" or "openpgp"

    @property
    def public_key(self) -> str:
        """As teams.yaml lists it."""
        ...

    def signing(self) -> GitOptions:
        """What git signs with it by."""
        ...

    def trusting(self, directory: Path, email: str) -> GitOptions:
        """What git verifies by, trusting this key alone (a new `directory` to keep it in,
        where the key needs a file; an OpenPGP home is made short, for gpg-agent's socket)."""
        ...


@dataclass(frozen=True)
class SshSigner:
    key: Path  # private; the public key is key.pub
    format: ClassVar[str] = "ssh"

    @property
    def public_key(self) -> str:
        return self.key.with_suffix(".pub").read_text().strip()

    def signing(self) -> GitOptions:
        return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={self.key}"], {}

    def trusting(self, directory: Path, email: str) -> GitOptions:
        directory.mkdir()
        signers = directory / "allowed_signers"
        signers.write_text(f"{email} {self.public_key}\n")
        return ["-c", f"gpg.ssh.allowedSignersFile={signers}"], {}


@dataclass(frozen=True)
class OpenPgpSigner:
    keys: GpgKeys
    key: GpgKey
    format: ClassVar[str] = "openpgp"

    @property
    def public_key(self) -> str:
        return self.key.public

    def signing(self) -> GitOptions:
        return self.keys.signing(self.key)

    def trusting(self, directory: Path, email: str) -> GitOptions:
        home = self.keys.verifier([self.key.public])
        # Ultimate owner trust, as an allowed_signers line gives an SSH key: git's %G? is
        # then G (good and valid), not U (good, validity unknown).
        self.keys.gpg("--import-ownertrust", data=f"{self.key.fingerprint}:6:\n", home=home)
        return [], {"GNUPGHOME": str(home)}


@dataclass(frozen=True)
class Host:
    """A Git host as teams.yaml lists it under `hosts`, and as its commits name it."""

    id: str
    name: str  # the committer name it writes
    email: str  # the committer email it writes
    signer: Signer  # its signing key
    writes_as: str = ""  # whose messages it writes (github, gitlab, forgejo): its id unless set

    @property
    def public_key(self) -> str:
        return self.signer.public_key

    @property
    def software(self) -> str:
        return self.writes_as or self.id

    def entry(self, **more: Any) -> dict[str, Any]:
        """Its entry under teams.yaml `hosts`."""
        return {"identity": "author", "emails": [self.email], "keys": [self.public_key], **more}


def hosts(people: People, gpg: GpgKeys) -> dict[str, Host]:
    """Each kind of host, each with its own key (made once per session)."""
    directory = people.directory
    return {
        "github": Host(
            "github", "GitHub", "noreply@github.com", OpenPgpSigner(gpg, gpg["rsa4096"])
        ),
        "gitlab": Host(
            "gitlab", "GitLab", "noreply@gitlab.com", SshSigner(make_key(directory, "gitlab"))
        ),
        # SIGNING_NAME and SIGNING_EMAIL of the instance's [repository.signing].
        "forgejo": Host(
            "forgejo",
            "Forgejo",
            "forgejo@git.example.com",
            SshSigner(make_key(directory, "forgejo")),
        ),
        "gitea": Host(
            "gitea",
            "Gitea",
            "gitea@gitea.example.com",
            OpenPgpSigner(gpg, gpg["gitea"]),
            writes_as="forgejo",
        ),
    }


def teams_with_hosts(people: People, *listed: Host, **entry: Any) -> dict[str, Any]:
    """The seed teams.yaml with `listed` hosts (more of each entry, such as
    vouches_for_squash_author, in `entry`)."""
    teams = seed_teams(people)
    teams["hosts"] = {host.id: host.entry(**entry) for host in listed}
    return teams


class HostServer:
    """A host's merge buttons, pressed on `repo` (whose main stands for the host's)."""

    def __init__(self, repo: ConfigRepo, host: Host, number: int = 7) -> None:
        self.repo = repo
        self.host = host
        self.number = number  # the pull request's number, in the messages

    # -- the buttons ----------------------------------------------------------------------

    def merge_commit(self, by: Person, branch: str, title: str = "Release") -> str:
        """A true merge: parents main and the branch's tip, its author whoever pressed the
        button, committed and signed by the host."""
        tree = self._merged_tree("main", branch)
        parents = (self.repo.head("main"), self.repo.head(branch))
        return self.commit(tree, parents, _named(by), self._merge_message(branch, title))

    def squash(self, author: Person, branch: str, title: str = "Release") -> str:
        """One commit of the branch's changes on main: GitHub's and Gitea's author is the
        pull request's author, GitLab's the merge request's; committed and signed by the
        host (GitLab's fast-forward merge method: nothing else)."""
        tree = self._merged_tree("main", branch)
        return self.commit(
            tree, (self.repo.head("main"),), _named(author), self._squash_message(branch, title)
        )

    def squash_and_merge_commit(self, author: Person, by: Person, branch: str) -> str:
        """GitLab's squash under its merge-commit method: a squash commit on the branch's
        base, authored by the merge request's author, then a merge of it by whoever
        pressed the button; both committed and signed by GitLab. The merge."""
        base = self.repo.git("merge-base", "main", branch)
        squashed = self._make(
            self.repo.head(f"{branch}^{{tree}}"),
            (base,),
            _named(author),
            self._squash_message(branch, "Release"),
        )
        tree = self._merged_tree("main", squashed)
        parents = (self.repo.head("main"), squashed)
        return self.commit(tree, parents, _named(by), self._merge_message(branch, "Release"))

    def rebase(self, branch: str) -> list[str]:
        """Each of the branch's commits made again on main, with its author and message,
        committed and signed by the host (GitHub's "Rebase and merge", Gitea's "Rebase")."""
        self._assert_on_main(branch)
        made = []
        for commit in self.repo.git("rev-list", "--reverse", f"main..{branch}").split():
            name, email, date, message = self.repo.git(
                "show", "-s", "--format=%an%x00%ae%x00%ad%x00%B", "--date=raw", commit
            ).split("\0")
            tree = self.repo.head(f"{commit}^{{tree}}")
            main = (self.repo.head("main"),)
            made.append(self.commit(tree, main, (name, email), message, author_date=date))
        return made

    def rebase_then_merge(self, by: Person, branch: str) -> tuple[list[str], str]:
        """Gitea's "Rebase then create merge commit": the branch's commits made again on
        main's tip (as `rebase` makes them), then a merge of them by whoever pressed the
        button. The commits made again, and the merge."""
        self._assert_on_main(branch)
        main = self.repo.head("main")
        made: list[str] = []
        for commit in self.repo.git("rev-list", "--reverse", f"main..{branch}").split():
            name, email, date, message = self.repo.git(
                "show", "-s", "--format=%an%x00%ae%x00%ad%x00%B", "--date=raw", commit
            ).split("\0")
            tree = self.repo.head(f"{commit}^{{tree}}")
            parent = made[-1] if made else main
            made.append(self._make(tree, (parent,), (name, email), message, author_date=date))
        tree = self._merged_tree("main", made[-1])
        merge = self.commit(
            tree, (main, made[-1]), _named(by), self._merge_message(branch, "Release")
        )
        return made, merge

    def fast_forward(self, branch: str) -> str:
        """GitLab's fast-forward merge, Gitea's "Fast-forward only": main moves to the
        branch's tip, and the host makes no commit at all."""
        self._assert_on_main(branch)
        self.repo.git("update-ref", "refs/heads/main", self.repo.head(branch))
        self.repo.git("reset", "-q", "--hard", "main")
        return self.repo.head("main")

    def update_branch(self, by: Person, branch: str) -> str:
        """GitHub's "Update branch": main merged into the pull request's branch (first
        parent the branch), its author whoever pressed it; the branch moves, main does not."""
        tree = self._merged_tree(branch, "main")
        commit = self._make(
            tree,
            (self.repo.head(branch), self.repo.head("main")),
            _named(by),
            f"Merge branch 'main' into {branch}",
        )
        self.repo.git("update-ref", f"refs/heads/{branch}", commit)
        return commit

    # -- one commit -------------------------------------------------------------------------

    def commit(
        self,
        tree: str,
        parents: tuple[str, ...],
        author: tuple[str, str],
        message: str,
        *,
        author_date: str | None = None,
    ) -> str:
        """A commit the host makes (`author`: name and email as the host writes them), put
        on main and checked out."""
        commit = self._make(tree, parents, author, message, author_date=author_date)
        self.repo.git("update-ref", "refs/heads/main", commit)
        self.repo.git("reset", "-q", "--hard", "main")
        return commit

    def _make(
        self,
        tree: str,
        parents: tuple[str, ...],
        author: tuple[str, str],
        message: str,
        *,
        author_date: str | None = None,
    ) -> str:
        self.repo.clock += 60
        when = f"{self.repo.clock} +0000"
        env = {
            "GIT_AUTHOR_NAME": author[0],
            "GIT_AUTHOR_EMAIL": author[1],
            "GIT_AUTHOR_DATE": author_date or when,
            "GIT_COMMITTER_NAME": self.host.name,
            "GIT_COMMITTER_EMAIL": self.host.email,
            "GIT_COMMITTER_DATE": when,
        }
        signing, signing_env = self.host.signer.signing()
        parent_args = [arg for parent in parents for arg in ("-p", parent)]
        return self.repo.git(
            *signing,
            *("commit-tree", "-S", tree, *parent_args, "-m", message),
            env={**env, **signing_env},
        )

    def _merged_tree(self, ours: str, theirs: str) -> str:
        return self.repo.git("merge-tree", "--write-tree", ours, theirs).split()[0]

    def _assert_on_main(self, branch: str) -> None:
        assert self.repo.git("merge-base", "main", branch) == self.repo.head("main"), (
            f"{branch} is not on main's tip: the host asks for a rebase first"
        )

    # -- the messages each host writes -----------------------------------------------------

    def _merge_message(self, branch: str, title: str) -> str:
        number = self.number
        if self.host.software == "gitlab":
            return (
                f"Merge branch '{branch}' into 'main'\n\n{title}\n\n"
                f"See merge request example/config!{number}"
            )
        if self.host.software == "forgejo":
            return (
                f"Merge pull request '{title}' (#{number}) from {branch} into main\n\n"
                f"Reviewed-on: {self._web}/example/config/pulls/{number}"
            )
        return f"Merge pull request #{number} from example/{branch}\n\n{title}"

    @property
    def _web(self) -> str:
        """The instance's address (Forgejo's and Gitea's messages link to it): its email's
        domain."""
        return "https://" + self.host.email.split("@")[1]

    def _squash_message(self, branch: str, title: str) -> str:
        subjects = self.repo.git("log", "--reverse", "--format=* %s", f"main..{branch}")
        if self.host.software == "gitlab":
            return title  # its default squash commit template: %{title}
        if self.host.software == "forgejo":
            return (
                f"{title} (#{self.number})\n\n{subjects}\n\n"
                f"Reviewed-on: {self._web}/example/config/pulls/{self.number}"
            )
        return f"{title} (#{self.number})\n\n{subjects}"


def _named(person: Person) -> tuple[str, str]:
    return person.name, person.email
