"""The LangChain vector store against a real server: LangChain's own standard suite
(`langchain-tests`' `VectorStoreIntegrationTests`, sync and async), then what the suite
does not cover: filters, delete by filter, MMR, relevance scores, retrievers, and an
index the server embeds itself."""

import uuid

import pytest

from conftest import integration

integration("langchain_core", "langchain")
integration("langchain_tests", "langchain")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

from annal.langchain import AnnalVectorStore, document_filter  # noqa: E402


class TestAnnalVectorStoreStandard(VectorStoreIntegrationTests):
    """LangChain's standard suite: every test gets an empty store."""

    @pytest.fixture()
    def vectorstore(self, shared_server):
        client = shared_server[0]
        store = AnnalVectorStore(client, f"lc_{uuid.uuid4().hex[:12]}", embedding=self.get_embeddings())
        try:
            yield store
        finally:
            store.delete()  # drops the index


@pytest.fixture()
def store(shared_server):
    client = shared_server[0]
    store = AnnalVectorStore(client, f"lc_{uuid.uuid4().hex[:12]}", embedding=DeterministicFakeEmbedding(size=16))
    yield store
    store.delete()


def docs(*specs):
    return [Document(page_content=text, metadata=meta) for text, meta in specs]


def test_a_document_filter_moves_field_names_under_metadata_and_keeps_operators():
    assert document_filter({"a": 1, "$or": [{"b": {"$gte": 2}}, {"$not": {"c": {"$in": [1]}}}]}) == {
        "metadata.a": 1,
        "$or": [{"metadata.b": {"$gte": 2}}, {"$not": {"metadata.c": {"$in": [1]}}}],
    }
    # Only $and, $or and $not are operators at a filter's level: a key that merely
    # starts with "$" is a field of the document's metadata.
    assert document_filter({"$price": {"$lt": 3}}) == {"metadata.$price": {"$lt": 3}}
    assert document_filter(None) is None


def test_filters_select_by_the_documents_metadata_with_annal_operators(store):
    store.add_documents(
        docs(("alpha", {"source": "wiki", "year": 2019}), ("beta", {"source": "wiki", "year": 2023}),
             ("gamma", {"source": "blog", "year": 2024})),
        ids=["a", "b", "c"],
    )
    wiki = store.similarity_search("alpha", k=10, filter={"source": "wiki"})
    assert sorted(d.id for d in wiki) == ["a", "b"]
    recent = store.similarity_search("alpha", k=10, filter={"$and": [{"source": "wiki"}, {"year": {"$gte": 2020}}]})
    assert [d.id for d in recent] == ["b"]
    assert recent[0] == Document(id="b", page_content="beta", metadata={"source": "wiki", "year": 2023})
    # A bad filter is the server's 400, naming the clause.
    with pytest.raises(Exception) as refused:
        store.similarity_search("alpha", k=1, filter={"year": {"$gt": "soon"}})
    assert "metadata.year" in str(refused.value)
    # An argument the store does not take is refused, not searched without.
    with pytest.raises(TypeError, match="where"):
        store.similarity_search("alpha", k=1, where={"source": "wiki"})


def test_delete_by_filter_removes_only_the_matching_documents(store):
    store.add_documents(docs(("one", {"keep": True}), ("two", {"keep": False}), ("three", {"keep": False})),
                        ids=["1", "2", "3"])
    store.delete(filter={"keep": False})
    assert [d.id for d in store.similarity_search("one", k=10)] == ["1"]
    # A misspelt selection is refused; it is not read as "delete everything".
    with pytest.raises(TypeError, match="filters"):
        store.delete(filters={"keep": True})
    assert [d.id for d in store.similarity_search("one", k=10)] == ["1"]


def test_mmr_prefers_a_different_document_over_a_duplicate(store):
    store.add_documents(docs(("apple", {}), ("apple", {}), ("banana", {})), ids=["a1", "a2", "b"])
    # The nearest two are the duplicates; MMR takes one of them and the other fruit.
    nearest = store.similarity_search("apple", k=2)
    assert sorted(d.id for d in nearest) == ["a1", "a2"]
    # (The query is the duplicates' own vector: at lambda 0.5 the other fruit would tie
    # with the second duplicate; below it, likeness to what is chosen weighs more.)
    diverse = store.max_marginal_relevance_search("apple", k=2, fetch_k=3, lambda_mult=0.25)
    assert [d.page_content for d in diverse] == ["apple", "banana"]
    retriever = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 3, "lambda_mult": 0.25})
    assert {d.page_content for d in retriever.invoke("apple")} == {"apple", "banana"}


def test_scores_are_distances_and_relevance_scores_lie_between_0_and_1(store):
    store.add_documents(docs(("same", {}), ("other", {})), ids=["s", "o"])
    (first, distance), (_, farther) = store.similarity_search_with_score("same", k=2)
    assert first.id == "s" and distance == pytest.approx(0.0, abs=1e-5) and farther > distance
    relevance = store.similarity_search_with_relevance_scores("same", k=2)
    assert relevance[0][1] == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 <= score <= 1.0 for _, score in relevance)
    # Scores follow the index's own distance, whatever the store was opened with.
    l2 = AnnalVectorStore(store.client, f"lc_{uuid.uuid4().hex[:12]}", embedding=store.embeddings, distance="l2")
    l2.add_documents(docs(("same", {}), ("other", {})), ids=["s", "o"])
    reopened = AnnalVectorStore(store.client, l2.index, embedding=store.embeddings)  # distance defaults to cosine
    (_, best), (_, worse) = reopened.similarity_search_with_relevance_scores("same", k=2)
    assert best == pytest.approx(1.0) and 0.0 < worse < best
    l2.delete()
    retriever = store.as_retriever(search_type="similarity_score_threshold",
                                   search_kwargs={"score_threshold": 0.99, "k": 2})
    assert [d.id for d in retriever.invoke("same")] == ["s"]


def test_from_texts_makes_the_index_and_returns_a_store_over_it(shared_server):
    client = shared_server[0]
    name = f"lc_{uuid.uuid4().hex[:12]}"
    store = AnnalVectorStore.from_texts(["x", "y"], DeterministicFakeEmbedding(size=8), [{"n": 1}, {"n": 2}],
                                        ids=["x", "y"], client=client, index=name)
    assert client.get_index(name)["params"]["dimension"] == 8
    assert store.get_by_ids(["y", "nope", "x"]) == [
        Document(id="y", page_content="y", metadata={"n": 2}),
        Document(id="x", page_content="x", metadata={"n": 1}),
    ]
    store.delete()


def test_an_index_the_server_embeds_takes_texts_and_answers_text_queries(shared_server):
    client = shared_server[0]
    store = AnnalVectorStore(client, f"lc_{uuid.uuid4().hex[:12]}", embedding=None, embedder="all-MiniLM-L6-v2")
    store.add_texts(
        ["The cat sat on the mat.", "Quarterly revenue grew by ten percent.", "A kitten naps on a rug."],
        metadatas=[{"topic": "pets"}, {"topic": "finance"}, {"topic": "pets"}],
        ids=["cat", "revenue", "kitten"],
    )
    hits = store.similarity_search("a small cat sleeping", k=2)
    assert sorted(d.id for d in hits) == ["cat", "kitten"]
    assert {d.page_content for d in hits} == {"The cat sat on the mat.", "A kitten naps on a rug."}
    finance = store.similarity_search("animals", k=3, filter={"topic": "finance"})
    assert [d.id for d in finance] == ["revenue"]
    assert finance[0].metadata == {"topic": "finance"}
    assert store.get_by_ids(["kitten"]) == [
        Document(id="kitten", page_content="A kitten naps on a rug.", metadata={"topic": "pets"})
    ]
    store.delete()
