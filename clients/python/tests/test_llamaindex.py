"""The LlamaIndex vector store against a real server: nodes in and out, every filter
operator annal can express (and a refusal of those it cannot), deletes by document, id
and filter, MMR, and a `VectorStoreIndex` built on it end to end."""

import hashlib
import uuid

import numpy as np
import pytest

from conftest import integration

integration("llama_index.core", "llamaindex")

from llama_index.core import Document, StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from annal.llamaindex import AnnalVectorStore, to_annal_filter  # noqa: E402

DIM = 16


def vector(text: str) -> list:
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).normal(size=DIM).tolist()


class HashEmbedding(BaseEmbedding):
    """A deterministic stand-in model: a vector seeded by the text's hash."""

    def _get_query_embedding(self, query: str) -> list:
        return vector(query)

    async def _aget_query_embedding(self, query: str) -> list:
        return vector(query)

    def _get_text_embedding(self, text: str) -> list:
        return vector(text)


def node(id: str, text: str, doc: str, **metadata) -> TextNode:
    n = TextNode(id_=id, text=text, metadata=metadata, embedding=vector(text))
    n.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc)
    return n


def f(key, value, op="=="):
    return MetadataFilter(key=key, value=value, operator=FilterOperator(op))


@pytest.fixture()
def store(shared_server):
    store = AnnalVectorStore(shared_server[0], f"li_{uuid.uuid4().hex[:12]}")
    store.add([
        node("n1", "alpha", "doc-a", year=2019, tags=["x", "y"], source="wiki"),
        node("n2", "beta", "doc-a", year=2021, tags=["y"], source="wiki"),
        node("n3", "gamma", "doc-b", year=2023, tags=["z"], source="blog"),
    ])
    yield store
    store.clear()


def ids(store, flt=None, k=10, text="alpha", **query):
    result = store.query(VectorStoreQuery(query_embedding=vector(text), similarity_top_k=k, filters=flt, **query))
    return sorted(result.ids)


def test_metadata_filters_are_translated_into_annals_language():
    flt = MetadataFilters(
        filters=[f("year", 2020, ">="), MetadataFilters(filters=[f("a", 1), f("b", [1, 2], "in")],
                                                         condition=FilterCondition.OR)],
    )
    assert to_annal_filter(flt) == {"$and": [{"year": {"$gte": 2020}}, {"$or": [{"a": 1}, {"b": {"$in": [1, 2]}}]}]}
    assert to_annal_filter(MetadataFilters(filters=[f("t", ["x", "y"], "all")])) == {
        "$and": [{"$and": [{"t": {"$contains": "x"}}, {"t": {"$contains": "y"}}]}]
    }
    assert to_annal_filter(None) is None
    assert to_annal_filter(MetadataFilters(filters=[f("a", 1), f("b", 2)], condition=FilterCondition.NOT)) == {
        "$not": {"$or": [{"a": 1}, {"b": 2}]}
    }
    for op in ("text_match", "text_match_insensitive", "is_empty"):
        with pytest.raises(ValueError, match="no equivalent"):
            to_annal_filter(MetadataFilters(filters=[f("t", "x", op)]))
    with pytest.raises(ValueError, match="at least one value"):
        to_annal_filter(MetadataFilters(filters=[f("t", [], "any")]))


def test_a_query_returns_the_nearest_nodes_with_their_text_metadata_and_similarity(store):
    result = store.query(VectorStoreQuery(query_embedding=vector("beta"), similarity_top_k=2))
    assert result.ids[0] == "n2"
    assert result.nodes[0].get_content() == "beta"
    assert result.nodes[0].metadata == {"year": 2021, "tags": ["y"], "source": "wiki"}
    assert result.nodes[0].ref_doc_id == "doc-a"
    assert result.similarities[0] == pytest.approx(1.0, abs=1e-5)
    assert result.similarities[1] < result.similarities[0]


def test_every_operator_selects_what_it_says(store):
    assert ids(store, MetadataFilters(filters=[f("source", "wiki")])) == ["n1", "n2"]
    assert ids(store, MetadataFilters(filters=[f("source", "wiki", "!=")])) == ["n3"]
    assert ids(store, MetadataFilters(filters=[f("year", 2021, ">")])) == ["n3"]
    assert ids(store, MetadataFilters(filters=[f("year", 2021, ">=")])) == ["n2", "n3"]
    assert ids(store, MetadataFilters(filters=[f("year", 2021, "<")])) == ["n1"]
    assert ids(store, MetadataFilters(filters=[f("year", 2021, "<=")])) == ["n1", "n2"]
    assert ids(store, MetadataFilters(filters=[f("year", [2019, 2023], "in")])) == ["n1", "n3"]
    assert ids(store, MetadataFilters(filters=[f("year", [2019, 2023], "nin")])) == ["n2"]
    assert ids(store, MetadataFilters(filters=[f("tags", "y", "contains")])) == ["n1", "n2"]
    assert ids(store, MetadataFilters(filters=[f("tags", ["x", "z"], "any")])) == ["n1", "n3"]
    assert ids(store, MetadataFilters(filters=[f("tags", ["x", "y"], "all")])) == ["n1"]
    either = MetadataFilters(filters=[f("year", 2019), f("source", "blog")], condition=FilterCondition.OR)
    assert ids(store, either) == ["n1", "n3"]
    # NOT: none of its filters holds (LlamaIndex's meaning).
    neither = MetadataFilters(filters=[f("year", 2019), f("source", "blog")], condition=FilterCondition.NOT)
    assert ids(store, neither) == ["n2"]
    assert ids(store, MetadataFilters(filters=[either], condition=FilterCondition.NOT)) == ["n2"]
    assert ids(store, doc_ids=["doc-b"]) == ["n3"]


def test_deletes_by_document_by_id_and_by_filter_and_reads_back_by_id(store):
    assert [n.node_id for n in store.get_nodes(node_ids=["n3", "missing", "n1"])] == ["n3", "n1"]
    assert [n.node_id for n in store.get_nodes(filters=MetadataFilters(filters=[f("source", "wiki")]))] == ["n1", "n2"]
    store.delete("doc-b")
    assert ids(store) == ["n1", "n2"]
    store.delete_nodes(node_ids=["n1"], filters=MetadataFilters(filters=[f("source", "blog")]))
    assert ids(store) == ["n1", "n2"], "n1 is not from the blog: both must hold"
    store.delete_nodes(filters=MetadataFilters(filters=[f("year", 2021)]))
    assert ids(store) == ["n1"]
    store.delete_nodes(node_ids=["n1"])
    assert ids(store) == []


def test_mmr_mode_prefers_a_different_node_over_a_duplicate(shared_server):
    store = AnnalVectorStore(shared_server[0], f"li_{uuid.uuid4().hex[:12]}")
    store.add([node("a1", "apple", "d"), node("a2", "apple", "d"), node("b", "banana", "d")])
    plain = store.query(VectorStoreQuery(query_embedding=vector("apple"), similarity_top_k=2))
    assert sorted(plain.ids) == ["a1", "a2"]
    mmr = store.query(VectorStoreQuery(query_embedding=vector("apple"), similarity_top_k=2,
                                       mode=VectorStoreQueryMode.MMR, mmr_threshold=0.25))
    assert [n.get_content() for n in mmr.nodes] == ["apple", "banana"]
    store.clear()


def test_a_vector_store_index_built_on_it_retrieves_with_filters(shared_server):
    store = AnnalVectorStore(shared_server[0], f"li_{uuid.uuid4().hex[:12]}")
    documents = [
        Document(text="annal keeps every change as an event in its log", metadata={"topic": "storage"}),
        Document(text="the cat sleeps on a warm windowsill all afternoon", metadata={"topic": "pets"}),
    ]
    index = VectorStoreIndex.from_documents(
        documents, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=HashEmbedding()
    )
    retriever = index.as_retriever(similarity_top_k=5,
                                   filters=MetadataFilters(filters=[f("topic", "pets")]))
    hits = retriever.retrieve("where does the cat sleep?")
    assert [h.node.get_content() for h in hits] == ["the cat sleeps on a warm windowsill all afternoon"]
    assert hits[0].node.metadata == {"topic": "pets"}
    # Deleting a source document through the index removes its nodes from annal.
    index.delete_ref_doc(documents[1].doc_id, delete_from_docstore=True)
    assert retriever.retrieve("where does the cat sleep?") == []
    store.clear()
