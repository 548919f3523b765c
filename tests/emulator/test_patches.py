"""The PATCH content types, each against the document that defines it (apiserver/patch.py)."""

from __future__ import annotations

import pytest
from sentiment_devcluster.apiserver.patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from sentiment_devcluster.apiserver.schema import TypeInfo

DEPLOYMENT = TypeInfo("Deployment", has_status=True)


# RFC 7386, Appendix A: the example test cases, verbatim.
@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386_appendix_a(target: object, patch: object, result: object) -> None:
    assert merge_patch(target, patch) == result


# RFC 6902, Appendix A (A.1, A.2, A.3, A.4, A.6, A.8, A.9, A.10).
def test_json_patch_rfc6902_examples() -> None:
    assert json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}]) == {
        "baz": "qux",
        "foo": "bar",
    }
    assert json_patch({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}]) == {
        "foo": ["bar", "qux", "baz"]
    }
    assert json_patch({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}]) == {"foo": "bar"}
    assert json_patch({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}]) == {
        "foo": ["bar", "baz"]
    }
    assert json_patch({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}]) == {
        "baz": "boo",
        "foo": "bar",
    }
    moved = json_patch(
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
    )
    assert moved == {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}
    assert json_patch({"baz": "qux", "foo": ["a", 2, "c"]}, [{"op": "test", "path": "/foo/1", "value": 2}])
    assert json_patch({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]) == {
        "foo": ["bar", ["abc", "def"]]
    }
    assert json_patch({"/": 1, "m~n": 2}, [{"op": "replace", "path": "/m~0n", "value": 3}]) == {
        "/": 1,
        "m~n": 3,
    }


def test_json_patch_errors_like_the_rfc() -> None:
    # A.9: a failed test; A.12: adding to a nonexistent target; removing what is not there.
    with pytest.raises(PatchError, match="test failed"):
        json_patch({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}])
    with pytest.raises(PatchError, match="does not exist"):
        json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}])
    with pytest.raises(PatchError, match="does not exist"):
        json_patch({"foo": "bar"}, [{"op": "remove", "path": "/nope"}])
    with pytest.raises(PatchError):
        json_patch({}, {"op": "add"})


def _deployment(containers: list[dict[str, object]]) -> dict[str, object]:
    return {"spec": {"template": {"spec": {"containers": containers}}}}


def _containers(obj: dict[str, object]) -> list[dict[str, object]]:
    return obj["spec"]["template"]["spec"]["containers"]  # type: ignore[index,no-any-return]


# strategic-merge-patch.md: "Merging lists of maps: the patchMergeKey identifies the element".
def test_strategic_merge_patch_merges_containers_by_name() -> None:
    live = _deployment([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}])
    patched = strategic_merge_patch(live, _deployment([{"name": "b", "image": "b:2"}]), DEPLOYMENT)
    assert _containers(patched) == [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]
    # A JSON merge patch replaces the whole list: the difference the content type makes.
    merged = merge_patch(live, _deployment([{"name": "b", "image": "b:2"}]))
    assert _containers(merged) == [{"name": "b", "image": "b:2"}]


def test_strategic_merge_patch_merges_nested_env_by_name_and_mounts_by_mount_path() -> None:
    live = _deployment(
        [
            {
                "name": "a",
                "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                "volumeMounts": [{"name": "v", "mountPath": "/m"}],
            }
        ]
    )
    patch = _deployment(
        [
            {
                "name": "a",
                "env": [{"name": "Y", "value": "3"}],
                "volumeMounts": [{"name": "w", "mountPath": "/m"}],
            }
        ]
    )
    (container,) = _containers(strategic_merge_patch(live, patch, DEPLOYMENT))
    assert container["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}]
    assert container["volumeMounts"] == [{"name": "w", "mountPath": "/m"}]


def test_strategic_merge_patch_directives() -> None:
    live = _deployment([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}])
    # "$patch: delete" removes the element with that key.
    deleted = strategic_merge_patch(live, _deployment([{"name": "a", "$patch": "delete"}]), DEPLOYMENT)
    assert _containers(deleted) == [{"name": "b", "image": "b:1"}]
    # "$patch: replace" in a list replaces the list.
    replaced = strategic_merge_patch(
        live, _deployment([{"name": "c", "image": "c:1"}, {"$patch": "replace"}]), DEPLOYMENT
    )
    assert _containers(replaced) == [{"name": "c", "image": "c:1"}]
    # "$patch: replace" in a map replaces the map.
    spec = {"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}
    live_strategy = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    assert strategic_merge_patch(live_strategy, spec, DEPLOYMENT) == {
        "spec": {"strategy": {"type": "Recreate"}}
    }
    # $retainKeys keeps only the listed keys of the map (kubectl sends it for the strategy).
    retain = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert strategic_merge_patch(live_strategy, retain, DEPLOYMENT) == {
        "spec": {"strategy": {"type": "Recreate"}}
    }
    # null deletes, as in a merge patch; lists without a merge key are replaced.
    tolerations = {"spec": {"template": {"spec": {"tolerations": [{"key": "b"}]}}}}
    live_tol = {"spec": {"template": {"spec": {"tolerations": [{"key": "a"}], "nodeSelector": {"x": "y"}}}}}
    patched = strategic_merge_patch(live_tol, {**tolerations}, DEPLOYMENT)
    assert patched["spec"]["template"]["spec"]["tolerations"] == [{"key": "b"}]
    cleared = strategic_merge_patch(
        live_tol, {"spec": {"template": {"spec": {"nodeSelector": None}}}}, DEPLOYMENT
    )
    assert "nodeSelector" not in cleared["spec"]["template"]["spec"]


def test_strategic_merge_patch_finalizers_are_a_set() -> None:
    live = {"metadata": {"finalizers": ["a", "b"]}}
    assert strategic_merge_patch(live, {"metadata": {"finalizers": ["b", "c"]}}, DEPLOYMENT) == {
        "metadata": {"finalizers": ["a", "b", "c"]}
    }
    removed = strategic_merge_patch(
        live, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, DEPLOYMENT
    )
    assert removed == {"metadata": {"finalizers": ["b"]}}


def test_strategic_merge_patch_is_refused_for_custom_resources() -> None:
    with pytest.raises(PatchError, match="not supported for custom resources"):
        strategic_merge_patch({}, {"spec": {}}, TypeInfo("SentimentModel", crd_schema={"type": "object"}))


def test_strategic_merge_patch_needs_the_merge_key() -> None:
    with pytest.raises(PatchError, match="no merge key 'name'"):
        strategic_merge_patch(_deployment([{"name": "a"}]), _deployment([{"image": "x"}]), DEPLOYMENT)
