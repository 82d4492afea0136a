"""Every documented apply after a first deployment keeps the deployment's image.

`container_image` defaults to empty, which deploys Google's placeholder container: an apply
without it swaps the running worker pool and API back to the placeholder (the workers stop
processing) and, without `alert_email`, drops the alerts' email channel. docs/deploy.md and
infrastructure-manager/README.md keep the values in a .tfvars file: `terraform/terraform.tfvars`
(which Terraform reads at every apply) and, for Infrastructure Manager, the file every apply
passes with `--inputs-file=`.

The documents are read in order, as an operator follows them: the lines that write a .tfvars
file (`cat > F <<EOF` … `EOF`, `echo "…" >> F`) are run with bash in a scratch folder, and at
each `terraform apply` / `gcloud infra-manager deployments apply` the values it deploys with
(the file it reads, plus its `-var` or `--input-values`) are parsed. Only the first apply of
each tool (step 1 of the first deployment, before the image is built) may go without the
image.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import REPO, load_hcl

DEPLOY = REPO / "docs" / "deploy.md"
IM_README = REPO / "infrastructure-manager" / "README.md"
TERRAFORM_TFVARS = "terraform.tfvars"
ENV = {"PROJECT_ID": "demo-project", "REGION": "us-central1", "PATH": "/usr/bin:/bin"}

FENCE = re.compile(r"^[ \t]*```(?:bash|sh)[ \t]*\n(.*?)^[ \t]*```", re.M | re.S)
ANY_FENCE = re.compile(r"^[ \t]*```.*?^[ \t]*```", re.M | re.S)
INLINE = re.compile(r"`([^`]+)`")
HEREDOC = re.compile(r"^cat > (\S+) <<'?EOF'?$")
APPEND = re.compile(r"^echo .* >> (\S+)$")


def command_groups(text: str) -> list[list[str]]:
    """The shell blocks of a document, in order, each as its lines (continuations joined,
    comments dropped), and every inline code span that runs an apply as a block of its own."""
    groups: list[tuple[int, list[str]]] = []
    for match in FENCE.finditer(text):
        body = match.group(1).replace("\\\n", " ")
        lines = [" ".join(line.split()) for line in body.splitlines()]
        groups.append((match.start(), [line for line in lines if not line.startswith("#")]))
    prose = ANY_FENCE.sub(lambda m: " " * len(m.group(0)), text)
    for match in INLINE.finditer(prose):
        span = " ".join(match.group(1).split())
        # `gcloud infra-manager deployments apply` alone names the command (it runs nothing
        # without the deployment it applies).
        if is_apply(span) and not span.endswith("deployments apply"):
            groups.append((match.start(), [span]))
    return [lines for _, lines in sorted(groups, key=lambda g: g[0])]


def is_apply(line: str) -> bool:
    return "terraform apply" in line or "infra-manager deployments apply" in line


def tool(line: str) -> str:
    return "terraform" if "terraform apply" in line else "infra-manager"


@dataclass
class Follower:
    """Follows the documents' commands in a scratch folder, judging each apply."""

    workdir: Path
    applies: dict[str, int] = field(default_factory=lambda: {"terraform": 0, "infra-manager": 0})
    problems: list[str] = field(default_factory=list)
    judged: list[tuple[str, dict]] = field(default_factory=list)

    def run(self, script: str) -> None:
        proc = subprocess.run(
            ["bash", "-euc", script],
            cwd=self.workdir,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, f"{script}\n{proc.stderr}"

    def file_values(self, name: str) -> dict:
        path = self.workdir / Path(name).name
        return load_hcl(path) if path.exists() else {}

    def follow(self, where: str, lines: list[str]) -> None:
        i = 0
        while i < len(lines):
            line = lines[i]
            heredoc = HEREDOC.match(line)
            if heredoc:
                end = lines.index("EOF", i)
                self.run("\n".join(lines[i : end + 1]))
                i = end + 1
                continue
            if APPEND.match(line):
                self.run(line)
            elif is_apply(line):
                self.judge(where, line)
            i += 1

    def deployed_values(self, line: str) -> dict | None:
        """The input values the apply deploys with; None when they cannot be known."""
        if tool(line) == "terraform":
            files = re.findall(r'-var-file[= ]"?([^\s"]+)', line) or [TERRAFORM_TFVARS]
            values: dict = {}
            for name in files:
                values.update(self.file_values(name))
            for name in re.findall(r'-var[= ]"?([A-Za-z_][A-Za-z0-9_]*)=', line):
                values[name] = "(command line)"
            return values
        inputs_file = re.findall(r"--inputs-file=(\S+)", line)
        input_values = re.findall(r'--input-values="?([^\s"]+)', line)
        if inputs_file and input_values:
            self.problems.append(f"{line}: --inputs-file and --input-values exclude each other")
        if inputs_file:
            path = self.workdir / Path(inputs_file[0]).name
            return load_hcl(path) if path.exists() else None
        values = {}
        for pair in ",".join(input_values).split(","):
            if "=" in pair:
                values[pair.split("=", 1)[0]] = "(command line)"
        return values

    def judge(self, where: str, line: str) -> None:
        kind = tool(line)
        self.applies[kind] += 1
        values = self.deployed_values(line)
        self.judged.append((line, values or {}))
        if values is None:
            self.problems.append(f"{where}: `{line}` reads an inputs file no step wrote")
            return
        if "project_id" not in values:
            self.problems.append(f"{where}: `{line}` deploys without project_id")
        if self.applies[kind] == 1:
            return  # step 1 of the first deployment: the image is not built yet
        missing = [name for name in ("container_image", "alert_email") if name not in values]
        if missing:
            self.problems.append(
                f"{where}: `{line}` deploys without {', '.join(missing)}: "
                "the placeholder container again, the workers stop processing"
            )


@pytest.fixture
def follower(tmp_path) -> Follower:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed: the documents' commands cannot be followed")
    return Follower(tmp_path)


def follow_documents(follower: Follower, deploy: str, readme: str) -> Follower:
    for lines in command_groups(deploy):
        follower.follow("docs/deploy.md", lines)
    # The README's commands come after a first deployment that docs/deploy.md describes.
    for lines in command_groups(readme):
        follower.follow("infrastructure-manager/README.md", lines)
    return follower


def first_deployment_block(text: str, heading: str) -> list[str]:
    section = text.split("## First deployment", 1)[1].split(heading, 1)[1]
    section = section.split("\n### ", 1)[0]
    (block,) = [lines for lines in command_groups(section) if len(lines) > 1]
    return block


def test_every_documented_apply_after_the_first_keeps_the_image(follower) -> None:
    followed = follow_documents(follower, DEPLOY.read_text(), IM_README.read_text())
    assert not followed.problems, "\n".join(followed.problems)
    # Scaling, teardown, releases, the README's local and Git sources: all were judged.
    assert followed.applies["terraform"] >= 4, followed.judged
    assert followed.applies["infra-manager"] >= 5, followed.judged
    readme_applies = [line for line in command_groups(IM_README.read_text())]
    assert any("--git-source-repo" in line for lines in readme_applies for line in lines)


def test_the_first_deployment_writes_the_values_to_a_tfvars_file(follower) -> None:
    """Terraform: terraform/terraform.tfvars, written before step 1, gains container_image at
    step 3 before the apply; Infrastructure Manager: the same with its --inputs-file."""
    text = DEPLOY.read_text()
    for heading, name in (
        ("### Terraform", TERRAFORM_TFVARS),
        ("### Infrastructure Manager", "behavioral-analytics.tfvars"),
    ):
        block = first_deployment_block(text, heading)
        applies = [i for i, line in enumerate(block) if is_apply(line)]
        writes = [i for i, line in enumerate(block) if HEREDOC.match(line) or APPEND.match(line)]
        assert len(applies) == 2, f"{heading}: steps 1 and 3 apply: {block}"
        assert writes and writes[0] < applies[0], f"{heading}: the values are written first"
        image_steps = [
            i
            for i in writes
            if APPEND.match(block[i])
            and "container_image" in block[i]
            and block[i].endswith(f">> {name}")
        ]
        assert image_steps and applies[0] < image_steps[0] < applies[1], (
            f"{heading}: step 3 adds container_image to {name} before its apply"
        )
        follower.follow(heading, block)
        values = follower.file_values(name)
        assert {"project_id", "region", "alert_email", "container_image"} <= set(values), values
        assert values["container_image"] == (
            "us-central1-docker.pkg.dev/demo-project/behavioral-analytics/processor:v1"
        )
        if name != TERRAFORM_TFVARS:
            assert all(f"--inputs-file={name}" in block[i] for i in applies), block
        else:
            assert block[0] == "cd terraform", "terraform.tfvars is read in terraform/"
    assert not follower.problems, "\n".join(follower.problems)


def test_the_readmes_inputs_file_example_carries_the_image(tmp_path) -> None:
    text = IM_README.read_text()
    (example,) = re.findall(r"```hcl\n(.*?)```", text, flags=re.S)
    path = tmp_path / "example.tfvars"
    path.write_text(example)
    assert {"project_id", "region", "alert_email", "container_image"} <= set(load_hcl(path))
    assert "--inputs-file=behavioral-analytics.tfvars" in text


def test_the_docs_say_what_an_apply_without_the_image_does() -> None:
    text = " ".join(DEPLOY.read_text().split())
    assert re.search(r"apply without (it|`container_image`).{0,300}?placeholder", text)
    assert re.search(r"placeholder.{0,300}?workers (then )?stop processing", text)


def test_the_old_documented_flow_is_caught(tmp_path) -> None:
    """The follower itself: the commands the tester reported (a Scaling `-var`, a teardown
    with only project_id, an Infrastructure Manager apply with only project_id and region,
    after a first deployment with -var flags) are each caught."""
    old = "\n".join(
        [
            "```bash",
            'terraform apply -var="project_id=$PROJECT_ID" -var="alert_email=a@example.com"',
            'terraform apply -var="project_id=$PROJECT_ID" -var="alert_email=a@example.com" \\',
            '    -var="container_image=r/p:v1"',
            "```",
            "Change the count with `terraform apply -var=min_instances=N`.",
            "`terraform apply -var=project_id=$PROJECT_ID -var=firestore_delete_protection=false`",
            "```bash",
            "gcloud infra-manager deployments apply D --input-values=project_id=p,region=r",
            "gcloud infra-manager deployments apply D --input-values=project_id=p,region=r",
            "```",
        ]
    )
    followed = follow_documents(Follower(tmp_path), old, "")
    caught = [problem for problem in followed.problems if "container_image" in problem]
    assert len(caught) == 3, followed.problems
    assert "min_instances" in caught[0] and "firestore_delete_protection" in caught[1]
