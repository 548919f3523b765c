"""Label and field selectors against
https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors and
https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/
(apiserver/selectors.py)."""

from __future__ import annotations

import pytest
from sentiment_devcluster.apiserver.selectors import BadSelector, field_selector, label_selector, selector


def obj(labels: dict[str, str], name: str = "x", namespace: str = "default") -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels}}


@pytest.mark.parametrize(
    ("text", "labels", "selected"),
    [
        ("environment = production", {"environment": "production"}, True),
        ("environment=production", {"environment": "dev"}, False),
        ("environment==production", {"environment": "production"}, True),
        ("tier != frontend", {"tier": "backend"}, True),
        ("tier != frontend", {}, True),  # "!=" also selects objects without the key
        ("environment=production,tier!=frontend", {"environment": "production", "tier": "frontend"}, False),
        ("environment in (production, qa)", {"environment": "qa"}, True),
        ("tier notin (frontend, backend)", {"tier": "cache"}, True),
        ("tier notin (frontend, backend)", {}, True),
        ("partition", {"partition": "a"}, True),
        ("!partition", {"partition": "a"}, False),
        (
            "app.kubernetes.io/managed-by=sentiment-operator",
            {"app.kubernetes.io/managed-by": "sentiment-operator"},
            True,
        ),
    ],
)
def test_label_selector_examples_from_the_docs(text: str, labels: dict[str, str], selected: bool) -> None:
    assert label_selector(text)(obj(labels)) is selected


def test_field_selectors_on_name_and_namespace() -> None:
    assert field_selector("metadata.name=x", "Deployment")(obj({}))
    assert not field_selector("metadata.namespace!=default", "Deployment")(obj({}))
    assert field_selector("metadata.name=x,metadata.namespace=default", "Deployment")(obj({}))


def test_unsupported_field_selector_is_refused() -> None:
    with pytest.raises(BadSelector, match=r"field label not supported: spec\.replicas"):
        field_selector("spec.replicas=1", "Deployment")
    event = {"involvedObject": {"name": "m"}, "reason": "Updated"}
    assert field_selector("involvedObject.name=m,reason=Updated", "Event")(event)


def test_unparseable_label_selector_is_refused() -> None:
    with pytest.raises(BadSelector):
        label_selector("a in b")


def test_no_selector_means_no_filter() -> None:
    assert selector({}, "Deployment") is None
    both = selector({"labelSelector": "a=b", "fieldSelector": "metadata.name=x"}, "Deployment")
    assert both is not None
    assert both(obj({"a": "b"}))
    assert not both(obj({"a": "b"}, name="y"))
