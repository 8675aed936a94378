"""A LangChain vector store over one annal index: `pip install 'annal-client[langchain]'`.

```python
from annal import Client
from annal.langchain import AnnalVectorStore

store = AnnalVectorStore(Client("http://127.0.0.1:7700"), "notes", embedding=my_embeddings)
store.add_texts(["annal keeps every change as an event"], metadatas=[{"source": "readme"}])
store.similarity_search("what does annal keep?", k=4, filter={"source": "readme"})
retriever = store.as_retriever(search_type="mmr", search_kwargs={"k": 4})
```

Each document is one record of the index: its vector (from `embedding`), and as
metadata `{"page_content": <text>, "metadata": <the document's metadata>}`. A `filter`
is annal's filter language (docs/OPERATIONS.md, "Metadata filters") over the document's
metadata: `{"source": "readme", "year": {"$gte": 2020}}`; its field names are looked up
under `metadata.` for you.

With `embedding=None` the index is a document index embedded by the server (created
with `embedder=...`): texts are sent as they are, and queries are embedded by the server
too.

The index is created on the first write if it does not exist (its dimension is the
embeddings'). Scores: `similarity_search_with_score` gives annal's distance (smaller is
closer); `similarity_search_with_relevance_scores` maps it to 0..1 (higher is closer).
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from . import K_MAX, AnnalError, Client

#: The record metadata key holding a document's text.
TEXT_KEY = "page_content"
#: The record metadata key holding a document's own metadata.
METADATA_KEY = "metadata"


def document_filter(filter: Optional[dict]) -> Optional[dict]:
    """`filter` over a document's metadata, as a filter over the record's metadata: every
    field name moves under `metadata.` (a dotted name is a nested field there too);
    `$and`, `$or` and `$not` stay, and a field's own operators (`$gte`, ...) are left as
    they are."""
    if filter is None:
        return None
    if not isinstance(filter, dict):
        raise TypeError(f"a filter is a dict, got {type(filter).__name__}")

    def move(node: Any) -> Any:
        if not isinstance(node, dict):
            return node  # the server names what is wrong with it
        out = {}
        for key, value in node.items():
            if key in ("$and", "$or") and isinstance(value, list):
                out[key] = [move(item) for item in value]
            elif key == "$not":
                out[key] = move(value)
            else:
                out[f"{METADATA_KEY}.{key}"] = value
        return out

    return move(filter)


def _refuse_unknown(kwargs: dict, method: str) -> None:
    if kwargs:
        raise TypeError(f"{method}() got arguments annal's store does not take: {', '.join(sorted(kwargs))}")


class AnnalVectorStore(VectorStore):
    """One annal index as a LangChain `VectorStore`."""

    def __init__(
        self,
        client: Client,
        index: str,
        embedding: Optional[Embeddings] = None,
        distance: str = "cosine",
        wait: str = "applied",
        embedder: Optional[str] = None,
    ):
        """`index`: the index's name (created on the first write if missing, with
        `distance`). `embedding`: the model for texts and queries; `None` for a document
        index the server embeds, with `embedder` (a model the server has, e.g.
        `all-MiniLM-L6-v2`) if it must create the index. `wait`: when a write answers
        (`applied`: searchable)."""
        self.client = client
        self.index = index
        self._embedding = embedding
        self.distance = distance
        self.wait = wait
        self.embedder = embedder
        self._index_distance: Optional[str] = None

    @property
    def embeddings(self) -> Optional[Embeddings]:
        return self._embedding

    # -- writes ------------------------------------------------------------------------

    def _ensure_index(self, dimension: Optional[int]) -> None:
        """Create the index if it is missing: of `dimension`, or (None) a document index
        embedded by the server with `embedder`."""
        try:
            self.client.get_index(self.index)
            return
        except AnnalError as error:
            if not error.is_missing_index(self.index):
                raise
        if dimension is None and self.embedder is None:
            raise ValueError(
                f"index {self.index!r} does not exist: give the store an embedding, or embedder= (a model "
                "the server has) to make it a document index the server embeds"
            )
        try:
            if dimension is None:
                self.client.create_index(self.index, distance=self.distance, embedder=self.embedder)
            else:
                self.client.create_index(self.index, dimension=dimension, distance=self.distance)
        except AnnalError as created:
            if created.status != 409:  # made meanwhile by another writer
                raise

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[Optional[str]]] = None,
        **kwargs: Any,
    ) -> List[str]:
        """Insert or replace one record per text (an id given again replaces its
        record); returns the ids, made up (UUID 4) where none was given. All or nothing
        per request of up to 1,000 texts."""
        texts = list(texts)
        if not texts:
            return []
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"{len(metadatas)} metadatas for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        _refuse_unknown(kwargs, "add_texts")
        ids = [id if id else str(uuid.uuid4()) for id in (ids or [None] * len(texts))]
        own = [dict(m) if m else {} for m in (metadatas or [None] * len(texts))]
        # The text is kept in the record's metadata in both modes, so that get_by_ids
        # returns it (the items route answers metadata, not a document's text).
        metadata = [{TEXT_KEY: text, METADATA_KEY: m} for text, m in zip(texts, own)]
        if self._embedding is None:
            self._ensure_index(None)
            answer = self.client.upsert_documents(self.index, ids, texts, metadata=metadata, wait=self.wait)
            self.client.wait_embedded(self.index, min_seq=answer.get("seq"))
            return ids
        vectors = np.asarray(self._embedding.embed_documents(texts), dtype=np.float32)
        self._ensure_index(vectors.shape[1])
        self.client.upsert(self.index, ids, vectors, metadata=metadata, wait=self.wait)
        return ids

    def delete(self, ids: Optional[List[str]] = None, filter: Optional[dict] = None, **kwargs: Any) -> Optional[bool]:
        """Delete the records of `ids` (ids that are not there are no error), or every
        record matching `filter` (a document filter; not on an index the server embeds,
        which refuses it); with neither, everything, as LangChain's `delete()` means: the
        index is dropped (with its settings) and the next write makes it again. Any
        other argument is refused rather than read as "everything"."""
        _refuse_unknown(kwargs, "delete")
        try:
            if ids is not None:
                if ids:
                    self.client.delete(self.index, ids=list(ids), wait=self.wait)
            elif filter is not None:
                self.client.delete(self.index, filter=document_filter(filter), wait=self.wait)
            else:
                self.client.drop_index(self.index)
        except AnnalError as error:
            if not error.is_missing_index(self.index):
                raise
        self._index_distance = None
        return True

    # -- reads -------------------------------------------------------------------------

    def _document(self, id: str, metadata: Optional[dict], text: Optional[str] = None) -> Document:
        metadata = metadata if isinstance(metadata, dict) else {}
        content = text if text is not None else metadata.get(TEXT_KEY, "")
        own = metadata.get(METADATA_KEY)
        return Document(id=id, page_content=content or "", metadata=dict(own) if isinstance(own, dict) else {})

    def get_by_ids(self, ids: Sequence[str], /) -> List[Document]:
        """The documents of `ids` that exist, in the order of `ids`."""
        if not ids:
            return []
        try:
            found = self.client.get_items(self.index, list(ids), include=["metadata"])["items"]
        except AnnalError as error:
            if error.is_missing_index(self.index):
                return []
            raise
        by_id = {item["id"]: item for item in found}
        return [self._document(id, by_id[id].get("metadata"), by_id[id].get("text")) for id in ids if id in by_id]

    def _embed_query(self, query: str) -> Optional[List[float]]:
        return None if self._embedding is None else self._embedding.embed_query(query)

    def _search(self, query: Optional[str], vector: Optional[Sequence[float]], k: int,
                filter: Optional[dict]) -> List[dict]:
        try:
            if vector is not None:
                return self.client.search(self.index, vector, k=k, filter=document_filter(filter))
            body: dict = {"text": query, "k": k}
            if filter is not None:
                body["filter"] = document_filter(filter)
            return self.client._call("POST", f"/vectors/index/{self.index}/search", body)["results"]
        except AnnalError as error:
            if error.is_missing_index(self.index):
                return []  # nothing written yet
            raise

    def _hits(self, hits: List[dict]) -> List[Tuple[Document, float]]:
        return [(self._document(h["id"], h.get("metadata"), h.get("text")), float(h["distance"])) for h in hits]

    def similarity_search_with_score_by_vector(
        self, embedding: List[float], k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        """The `k` nearest documents to `embedding` with annal's distance (smaller is
        closer)."""
        _refuse_unknown(kwargs, "similarity_search_with_score_by_vector")
        return self._hits(self._search(None, embedding, k, filter))

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        """The `k` nearest documents to `query` with annal's distance (smaller is closer)."""
        _refuse_unknown(kwargs, "similarity_search_with_score")
        return self._hits(self._search(query, self._embed_query(query), k, filter))

    def similarity_search_by_vector(
        self, embedding: List[float], k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    def similarity_search(
        self, query: str, k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def _distance_of_index(self) -> str:
        """The index's own distance (it may have been made with another than this
        store's `distance`); the store's while the index does not exist."""
        if getattr(self, "_index_distance", None) is None:
            try:
                self._index_distance = self.client.get_index(self.index)["params"]["distance"]
            except AnnalError as error:
                if not error.is_missing_index(self.index):
                    raise
                return self.distance
        return self._index_distance

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        # annal reports 1 - cosine, squared L2, or the negated inner product.
        distance = self._distance_of_index()
        if distance == "cosine":
            return lambda d: max(0.0, min(1.0, 1.0 - d / 2.0))
        if distance == "l2":
            return lambda d: 1.0 / (1.0 + d)
        return lambda d: 1.0 / (1.0 + np.exp(d))  # ip: the sigmoid of the inner product

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: List[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Optional[dict] = None,
        **kwargs: Any,
    ) -> List[Document]:
        """`k` documents among the `fetch_k` nearest, each chosen for nearness to
        `embedding` less its likeness to those chosen before it (`lambda_mult` 1: only
        nearness). The candidates' vectors are read back from the index."""
        _refuse_unknown(kwargs, "max_marginal_relevance_search_by_vector")
        hits = self._search(None, embedding, min(max(fetch_k, k), K_MAX), filter)
        if not hits:
            return []
        ids = [h["id"] for h in hits]
        items = {i["id"]: i for i in self.client.get_items(self.index, ids, include=["vector"])["items"]}
        ids = [id for id in ids if id in items]
        vectors = np.asarray([items[id]["vector"] for id in ids], dtype=np.float32)
        chosen = maximal_marginal_relevance(np.asarray(embedding, dtype=np.float32), vectors, lambda_mult, k)
        by_id = {h["id"]: h for h in hits}
        return [self._document(ids[i], by_id[ids[i]].get("metadata"), by_id[ids[i]].get("text")) for i in chosen]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Optional[dict] = None,
        **kwargs: Any,
    ) -> List[Document]:
        if self._embedding is None:
            raise ValueError("MMR needs the query's vector: give the store an embedding")
        return self.max_marginal_relevance_search_by_vector(
            self._embedding.embed_query(query), k, fetch_k, lambda_mult, filter, **kwargs
        )

    @classmethod
    def from_texts(
        cls,
        texts: List[str],
        embedding: Optional[Embeddings],
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[str]] = None,
        client: Optional[Client] = None,
        url: str = "http://127.0.0.1:7700",
        index: str = "langchain",
        distance: str = "cosine",
        wait: str = "applied",
        embedder: Optional[str] = None,
        **kwargs: Any,
    ) -> "AnnalVectorStore":
        """A store over `index` (on `client`, or a new client of `url`) holding `texts`."""
        _refuse_unknown(kwargs, "from_texts")
        store = cls(client or Client(url), index, embedding=embedding, distance=distance, wait=wait,
                    embedder=embedder)
        store.add_texts(texts, metadatas, ids=ids)
        return store
