"""Creating retrievals from vids: the request's identity, and the split into Polyv tasks."""

from __future__ import annotations

from polyv_retriever.contracts import RetrievalOptions
from polyv_retriever.pipeline.creation import chunks, fingerprint
from polyv_retriever.vocabulary import StorageClass


def test_the_same_request_in_any_order_has_the_same_identity_and_any_option_changes_it() -> None:
    base = fingerprint(["b", "a", "c"], 2, "polyv/", RetrievalOptions())
    assert fingerprint(["c", "a", "b"], 2, "polyv/", RetrievalOptions()) == base
    assert fingerprint(["a", "b"], 2, "polyv/", RetrievalOptions()) != base
    assert fingerprint(["a", "b", "c"], 3, "polyv/", RetrievalOptions()) != base
    assert fingerprint(["a", "b", "c"], 2, "x/", RetrievalOptions()) != base
    cold = RetrievalOptions(storageClass=StorageClass.DEEP_ARCHIVE)
    assert fingerprint(["a", "b", "c"], 2, "polyv/", cold) != base


def test_vids_are_split_sorted_into_tasks_of_at_most_100() -> None:
    vids = [f"v{i:04d}" for i in range(1000)][::-1]
    groups = chunks(vids)
    assert [len(g) for g in groups] == [100] * 10
    assert [v for g in groups for v in g] == sorted(vids)
    assert chunks(["b", "a"]) == [["a", "b"]]
