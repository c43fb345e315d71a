"""steps/switch.py's pure part: which link (and env version) each host goes back to when a switch fails, for
a fresh switch and for one that finishes the half-done switch of a dead run."""
from __future__ import annotations

from doit_stages.steps.switch import plan_hosts, previous_links

OLD, NEW, OTHER = "../releases/blog-old", "../releases/blog-new", "../releases/blog-other"


def state(link, intent_previous=None, release="blog-new"):
    intent = {"release": release, "previous": intent_previous} if intent_previous else None
    return {"link": link, "intent": intent}


def test_a_fresh_switch_goes_back_to_each_hosts_own_link():
    facts = {"web1": state(OLD), "web2": state(OTHER), "web3": state(None)}
    assert previous_links(facts, "blog-new") == {"web1": OLD, "web2": OTHER, "web3": None}


def test_a_host_that_finished_its_part_of_a_dead_switch_goes_back_where_the_intents_say():
    # the dead run logged web1 and removed its intent, then died: web1 already runs the new release
    facts = {"web1": state(NEW), "web2": state(NEW, OLD), "web3": state(OLD, OLD)}
    assert previous_links(facts, "blog-new") == {"web1": OLD, "web2": OLD, "web3": OLD}


def test_without_an_intent_for_the_release_a_host_on_it_stays_on_it():
    # a max_fail rollout left web1 on the new release for good: nothing half-done to finish
    facts = {"web1": state(NEW), "web2": state(OLD)}
    assert previous_links(facts, "blog-new") == {"web1": NEW, "web2": OLD}


def test_the_env_version_goes_back_with_the_link():
    # a switch of the very release a host runs, with a new env version: the way back is the version it had
    facts = {"web1": {**state(NEW), "env": "0123456789ab", "env_live": "fedcba987654"},
             "web2": {**state(NEW), "env": "0123456789ab", "env_live": "?"}}    # an env file no version names
    plan = plan_hosts(facts, "blog-new")
    assert plan["web1"] == {"previous": NEW, "env": "0123456789ab", "env_before": "fedcba987654", "keep": ""}
    assert plan["web2"]["keep"] and plan["web2"]["env_before"] == plan["web2"]["keep"] != "?"


def test_an_intent_for_another_env_version_is_not_this_switch():
    intent = {"release": "blog-new", "env": "aaaaaaaaaaaa", "previous": OLD, "env_before": "bbbbbbbbbbbb"}
    facts = {"web1": {"link": NEW, "intent": intent, "env": "cccccccccccc", "env_live": "aaaaaaaaaaaa"}}
    assert plan_hosts(facts, "blog-new")["web1"]["previous"] == NEW      # its own link: the intent is undone first
    facts["web1"]["env"] = "aaaaaaaaaaaa"
    assert plan_hosts(facts, "blog-new")["web1"] == {"previous": OLD, "env": "aaaaaaaaaaaa",
                                                     "env_before": "bbbbbbbbbbbb", "keep": ""}


def test_after_an_undone_switch_the_message_says_where_each_host_is():
    from doit_stages.config import Stage
    from doit_stages.steps.switch import back_text
    st = Stage(name="test", hosts=("web1", "web2"), link="sites/test")
    old = "../releases/blog-2026-01-01-0000-aaaaaaaaaaaa"
    before = {"web1": old, "web2": old}
    assert back_text(st, "new", before) == "every host of test is back on its previous release"
    assert back_text(st, "new", before, interrupted=True) == \
        "every host of test that had switched was put back on its previous release (undone)"
    # a first deploy: there was no release to go back to, and nothing says there was
    first = back_text(st, "new", {"web1": None, "web2": None})
    assert "previous release" not in first
    assert first == ("test had no release before: its link sites/test was removed on every host, so the stage has "
                     "no live release; new stays built, a rerun reuses it")
    mixed = back_text(st, "new", {"web1": before["web1"], "web2": None})
    assert mixed == ("web1 is back on blog-2026-01-01-0000-aaaaaaaaaaaa; web2 had no release of test before: its link "
                     "sites/test was removed there, so it runs none; new stays built, a rerun reuses it")
