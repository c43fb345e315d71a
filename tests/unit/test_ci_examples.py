"""examples/ci/: the GitHub Actions workflow and the GitLab CI pipeline, read with PyYAML and checked for
their structure (no schema package: that would need the network): the jobs and their order, the manual
steps, that every `doit` command they call is a command the README's stages.ini makes (doit list), that
each job gets the password_env variables its command needs from CI secrets, and that the report and the
JUnit XML are kept as artifacts also when the command failed. tests/integration/test_ci.py runs the same
commands against the lab."""
from __future__ import annotations

import pytest

from tests.lab.ci_examples import GITLAB, ROOT, github, github_commands, gitlab, gitlab_commands, gitlab_jobs

EXPECTED = {"deploy-test": ["deploy:test"], "promote-staging": ["promote:staging"], "promote-prod": ["promote:prod"]}


@pytest.fixture(scope="module")
def readme_config(tmp_path_factory):
    """The README's stages.ini (the one the examples' secrets are named after), loaded as doit would."""
    from doit_stages.config import load_config
    text = (ROOT / "README.md").read_text()
    ini = text.split("**2. `stages.ini`**", 1)[1].split("```ini\n", 1)[1].split("```", 1)[0]
    path = tmp_path_factory.mktemp("readme") / "stages.ini"
    path.write_text(ini)
    return load_config(path, environ={})


def commands_of(config) -> set[str]:
    """What `doit list` shows for this config: the basenames task_commands yields, status."""
    from types import SimpleNamespace

    from doit_stages.doit_tasks import commands_
    run = SimpleNamespace(config=config, session=None, releases=None)
    return {t["basename"] for t in commands_(run)} | {"status"}


def test_both_run_deploy_test_on_a_push_and_each_promotion_after_the_one_before():
    assert github_commands() == EXPECTED and gitlab_commands() == EXPECTED
    gh = github()
    on = gh.get("on", gh.get(True))   # YAML 1.1 reads a bare `on` as true
    assert list(on) == ["push"]
    jobs = gh["jobs"]
    assert jobs["promote-staging"]["needs"] == "deploy-test" and jobs["promote-prod"]["needs"] == "promote-staging"
    assert [jobs[j]["environment"] for j in EXPECTED] == ["test", "staging", "prod"]
    assert gh["concurrency"]["cancel-in-progress"] is False
    gl = gitlab_jobs()
    assert [gl[j]["stage"] for j in EXPECTED] == gitlab()["stages"]
    assert gl["promote-staging"]["needs"] == ["deploy-test"] and gl["promote-prod"]["needs"] == ["promote-staging"]
    assert [gl[j]["environment"]["name"] for j in EXPECTED] == ["test", "staging", "prod"]
    assert all(r.get("when") != "manual" for r in gl["deploy-test"]["rules"])
    assert all(r["when"] == "manual" for j in ("promote-staging", "promote-prod") for r in gl[j]["rules"])
    assert all(gl[j]["resource_group"] == "deploy" for j in EXPECTED)


def test_every_command_they_call_is_one_doit_lists(readme_config):
    known = commands_of(readme_config)
    for words in [*github_commands().values(), *gitlab_commands().values()]:
        assert words and set(words) <= known, (words, sorted(known))


def test_each_job_gets_the_passwords_its_command_needs_from_ci_secrets(readme_config):
    from doit_stages.start import databases_needed
    jobs = github()["jobs"]
    for name, words in github_commands().items():
        env = {k: v for step in jobs[name]["steps"] for k, v in (step.get("env") or {}).items()}
        for db in databases_needed(readme_config, words):
            var = readme_config.databases[db].password_env
            assert env.get(var) == f"${{{{ secrets.{var} }}}}", (name, var)
    gitlab = GITLAB.read_text()
    for db in readme_config.databases.values():   # CI/CD variables: named in the file's header
        assert f"#   {db.password_env} " in gitlab


def test_the_report_and_the_junit_xml_are_artifacts_even_when_the_command_failed():
    gh = github()
    assert gh["env"] == {"DEPLOY_REPORT": "ci-out/report.json", "DEPLOY_JUNIT_XML": "ci-out/verify.xml"}
    for name, job in gh["jobs"].items():
        upload = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
        assert len(upload) == 1 and upload[0]["if"] == "always()" and upload[0]["with"]["path"] == "ci-out/", name
        assert any("ci-out" in s.get("run", "") and "install -d" in s.get("run", "") for s in job["steps"]), name
    gl = gitlab()
    assert gl["variables"] == {"DEPLOY_REPORT": "ci-out/report.json", "DEPLOY_JUNIT_XML": "ci-out/verify.xml"}
    for name, job in gitlab_jobs().items():
        art = job["artifacts"]
        assert art["when"] == "always" and art["paths"] == ["ci-out/"], name
        assert art["reports"]["junit"] == "ci-out/verify.xml", name
        assert any("ci-out" in line and "install -d" in line for line in job["before_script"]), name
