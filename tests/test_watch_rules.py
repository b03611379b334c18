"""Watch rules (pure): parsing dockyard.toml and compose develop.watch, which action a path asks for, noise."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InvalidInputError
from engine.watch.rules import WatchPlan, WatchRule, is_noise, load_plan, parse_compose_watch, parse_dockyard_toml

TOML = """
[[watch]]
path = "site"
action = "sync"
target = "/www"
ignore = ["*.draft", "tmp/*"]

[[watch]]
path = "site/conf"
action = "sync+restart"
target = "/etc/app"

[[watch]]
path = "./hooks"
action = "sync+exec"
target = "/hooks"
exec = "run-hooks --all"

[[watch]]
path = "requirements.txt"
action = "rebuild"
"""


def test_dockyard_toml_rules() -> None:
    plan = parse_dockyard_toml(TOML)
    site, conf, hooks, reqs = plan.rules
    assert site == WatchRule("site", "sync", "/www", (), ("*.draft", "tmp/*"))
    assert conf.action == "sync+restart" and conf.target == "/etc/app"
    assert hooks.path == "hooks" and hooks.exec_command == ("/bin/sh", "-c", "run-hooks --all")
    assert reqs.action == "rebuild" and reqs.target is None


@pytest.mark.parametrize(("rel", "expected"), [
    ("site/index.html", "sync"),
    ("site/a/b/c.css", "sync"),
    ("site/conf/app.ini", "sync+restart"),  # the longest path wins
    ("hooks/x.sh", "sync+exec"),
    ("requirements.txt", "rebuild"),
    ("Dockerfile", None),
    ("sitemap.xml", None),  # a prefix of the name is not the directory
    ("site/page.draft", None),  # ignored by the sync rule: falls back to a rebuild
    ("site/tmp/x", None),
])
def test_action_for(rel: str, expected: str | None) -> None:
    rule = parse_dockyard_toml(TOML).action_for(rel)
    assert (rule.action if rule else None) == expected


def test_classify_rebuild_wins_and_syncs_group_by_rule() -> None:
    plan = parse_dockyard_toml(TOML)
    rebuild, syncs = plan.classify(["site/b.html", "site/a.html", "hooks/x.sh", "site/a.html"])
    assert not rebuild
    assert {r.path: files for r, files in syncs.items()} == {"site": ["site/a.html", "site/b.html"],
                                                          "hooks": ["hooks/x.sh"]}
    assert plan.classify(["site/a.html", "Dockerfile"])[0]
    assert WatchPlan().classify(["anything"]) == (True, {})


def test_container_path() -> None:
    rule = WatchRule("site", "sync", "/www")
    assert rule.container_path("site/a/b.html") == "/www/a/b.html"
    assert rule.container_path("site") == "/www"
    assert WatchRule(".", "sync", "/app").container_path("x.py") == "/app/x.py"


def test_compose_develop_watch() -> None:
    data = {"services": {"db": {"image": "postgres"}, "web": {"build": ".", "develop": {"watch": [
        {"path": "./src", "action": "sync", "target": "/app/src", "ignore": "node_modules/"},
        {"path": "./package.json", "action": "rebuild"},
        {"path": "./conf", "action": "sync+exec", "target": "/conf", "exec": {"command": ["kill", "-HUP", "1"]}},
    ]}}}}
    src, pkg, conf = parse_compose_watch(data).rules
    assert src == WatchRule("src", "sync", "/app/src", (), ("node_modules/",))
    assert pkg.action == "rebuild"
    assert conf.exec_command == ("kill", "-HUP", "1")
    assert parse_compose_watch({"services": {"x": {}}}) == WatchPlan()


@pytest.mark.parametrize(("text", "message"), [
    ('[[watch]]\naction = "sync"', "needs a path"),
    ('[[watch]]\npath = "a"\naction = "copy"', "unknown action 'copy'"),
    ('[[watch]]\npath = "a"\naction = "sync"', "needs an absolute target"),
    ('[[watch]]\npath = "a"\naction = "sync"\ntarget = "rel"', "needs an absolute target"),
    ('[[watch]]\npath = "a"\naction = "sync+exec"\ntarget = "/a"', "needs exec"),
    ("watch = 3", "must be a list"),
    ("[[watch]\n", "dockyard.toml"),
])
def test_bad_rules_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace("+", r"\+")) as info:
        parse_dockyard_toml(text)
    assert "\n" not in str(info.value)


def test_load_plan_prefers_dockyard_toml(tmp_path: Path) -> None:
    assert load_plan(tmp_path) == WatchPlan()
    (tmp_path / "dockyard.toml").write_text('[[watch]]\npath = "a"\naction = "sync"\ntarget = "/a"\n')
    assert load_plan(tmp_path).rules[0].path == "a"
    other = tmp_path / "other.toml"
    other.write_text('[[watch]]\npath = "b"\n')
    assert load_plan(tmp_path, other).rules[0].path == "b"


@pytest.mark.parametrize(("rel", "noise"), [
    (".git/index", True), ("sub/.git/HEAD", True), ("a/__pycache__/m.cpython-311.pyc", True),
    (".index.html.swp", True), ("index.html~", True), (".#index.html", True), ("#index.html#", True),
    ("4913", True), ("x.py", False), ("site/index.html", False), (".dockerignore", False), ("git/x", False),
])
def test_noise(rel: str, noise: bool) -> None:
    assert is_noise(rel) is noise
