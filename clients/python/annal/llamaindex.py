"""A LlamaIndex vector store over one annal index: `pip install 'annal-client[llamaindex]'`.

```python
from llama_index.core import StorageContext, VectorStoreIndex
from annal import Client
from annal.llamaindex import AnnalVectorStore

store = AnnalVectorStore(Client("http://127.0.0.1:7700"), "notes")
index = VectorStoreIndex.from_documents(documents, storage_context=StorageContext.from_defaults(vector_store=store))
index.as_retriever(filters=MetadataFilters(filters=[MetadataFilter(key="year", value=2020, operator=">=")]))
```

Each node is one record: its embedding, and as metadata the node's own metadata fields
(so filters reach them by name) beside LlamaIndex's `_node_content`, `_node_type`,
`doc_id` and `ref_doc_id` (as every LlamaIndex store keeps them). `MetadataFilters` are
translated into annal's filter language (docs/OPERATIONS.md, "Metadata filters"):
`==`, `!=`, `>`, `>=`, `<`, `<=`, `in`, `nin`, `contains`, `any`, `all`, and the `and`,
`or` and `not` conditions, nested. Text matching and `is_empty` have no annal
equivalent and are refused (`ValueError`), never ignored.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from . import K_MAX, AnnalError, Client

_COMPARISONS = {
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.CONTAINS: "$contains",
}


def to_annal_filter(filters: Optional[MetadataFilters]) -> Optional[dict]:
    """`filters` in annal's filter language (`None` for none)."""
    if filters is None or not filters.filters:
        return None

    def one(f: Any) -> dict:
        if isinstance(f, MetadataFilters):
            parts = [one(g) for g in f.filters]
            condition = f.condition or FilterCondition.AND
            if condition == FilterCondition.OR:
                return {"$or": parts}
            if condition == FilterCondition.NOT:  # none of them holds
                return {"$not": {"$or": parts}}
            return {"$and": parts}
        if not isinstance(f, MetadataFilter):
            raise ValueError(f"not a metadata filter: {f!r}")
        operator = f.operator
        if operator == FilterOperator.EQ:
            return {f.key: f.value}
        if operator in _COMPARISONS:
            return {f.key: {_COMPARISONS[operator]: f.value}}
        if operator in (FilterOperator.ANY, FilterOperator.ALL):
            values = f.value if isinstance(f.value, list) else [f.value]
            if not values:
                raise ValueError(f"filter operator {operator.value!r} on {f.key!r} needs at least one value")
            if operator == FilterOperator.ANY:  # the array holds one of the values
                return {f.key: {"$in": values}}
            return {"$and": [{f.key: {"$contains": v}} for v in values]}  # ... every value
        raise ValueError(f"filter operator {operator.value!r} on {f.key!r} has no equivalent in annal")

    return one(filters)


class AnnalVectorStore(BasePydanticVectorStore):
    """One annal index as a LlamaIndex vector store (it keeps the nodes' text)."""

    stores_text: bool = True
    flat_metadata: bool = False
    index: str
    distance: str = "cosine"
    wait: str = "applied"
    _client: Client = PrivateAttr()
    _index_distance: Optional[str] = PrivateAttr(default=None)

    def __init__(self, client: Client, index: str, distance: str = "cosine", wait: str = "applied",
                 **kwargs: Any):
        """`index`: created on the first `add` if missing, with `distance` and the
        embeddings' dimension. `wait`: when a write answers (`applied`: searchable)."""
        super().__init__(index=index, distance=distance, wait=wait, **kwargs)
        self._client = client

    @classmethod
    def class_name(cls) -> str:
        return "AnnalVectorStore"

    @property
    def client(self) -> Client:
        return self._client

    def _ensure_index(self, dimension: int) -> None:
        try:
            self._client.get_index(self.index)
        except AnnalError as error:
            if not error.is_missing_index(self.index):
                raise
            try:
                self._client.create_index(self.index, dimension=dimension, distance=self.distance)
            except AnnalError as created:
                if created.status != 409:  # made meanwhile
                    raise

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> List[str]:
        """Insert or replace the nodes (by node id); all or nothing per 1,000."""
        if not nodes:
            return []
        ids = [node.node_id for node in nodes]
        vectors = np.asarray([node.get_embedding() for node in nodes], dtype=np.float32)
        metadata = [node_to_metadata_dict(node, remove_text=False, flat_metadata=self.flat_metadata)
                    for node in nodes]
        self._ensure_index(vectors.shape[1])
        self._client.upsert(self.index, ids, vectors, metadata=metadata, wait=self.wait)
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of source document `ref_doc_id`."""
        self._delete(filter={"ref_doc_id": ref_doc_id})

    def delete_nodes(self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None,
                     **delete_kwargs: Any) -> None:
        """Delete the nodes of `node_ids`, or those `filters` select (both: both hold)."""
        condition = to_annal_filter(filters)
        if node_ids is not None and condition is not None:
            # Both must hold: the ids among those the filter selects.
            kept = {n.node_id for n in self.get_nodes(node_ids=node_ids, filters=filters)}
            node_ids, condition = [id for id in node_ids if id in kept], None
        if node_ids is not None:
            if node_ids:
                self._delete(ids=node_ids)
        elif condition is not None:
            self._delete(filter=condition)

    def _delete(self, **selection: Any) -> None:
        try:
            self._client.delete(self.index, wait=self.wait, **selection)
        except AnnalError as error:
            if not error.is_missing_index(self.index):
                raise

    def clear(self) -> None:
        """Drop the index (the next `add` makes it again)."""
        self._client.drop_index(self.index, missing_ok=True)
        self._index_distance = None

    def get_nodes(self, node_ids: Optional[List[str]] = None,
                  filters: Optional[MetadataFilters] = None) -> List[BaseNode]:
        """The nodes of `node_ids` (in that order, missing ones left out) that `filters`
        selects; or every node it selects."""
        condition = to_annal_filter(filters)
        if node_ids is not None and not node_ids:
            return []
        try:
            if node_ids is not None:
                found = self._client.get_items(self.index, node_ids, include=["metadata"])["items"]
                if condition is not None:
                    selected = {item["id"] for item in self._client.scroll(self.index, filter=condition)}
                    found = [item for item in found if item["id"] in selected]
                by_id = {item["id"]: item for item in found}
                return [metadata_dict_to_node(by_id[id]["metadata"]) for id in node_ids if id in by_id]
            return [metadata_dict_to_node(item["metadata"])
                    for item in self._client.scroll(self.index, filter=condition, include=["metadata"])]
        except AnnalError as error:
            if error.is_missing_index(self.index):
                return []
            raise

    def _similarity(self, distance: float) -> float:
        # annal reports 1 - cosine, squared L2, or the negated inner product; of the
        # index's own distance, which may differ from this store's `distance`.
        if self._index_distance is None:
            self._index_distance = self._client.get_index(self.index)["params"]["distance"]
        if self._index_distance == "cosine":
            return 1.0 - distance
        if self._index_distance == "l2":
            return 1.0 / (1.0 + distance)
        return -distance

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The `similarity_top_k` nodes nearest `query_embedding` that the filters (and
        `doc_ids`) select; in MMR mode, chosen among `mmr_prefetch_k` (default 4 x k)
        for nearness less likeness to those chosen (`mmr_threshold`, default 0.5)."""
        if query.query_embedding is None:
            raise ValueError("annal's LlamaIndex store searches by embedding: give query_embedding")
        if query.node_ids:
            raise ValueError("node_ids in a query: use get_nodes, or a metadata filter")
        if query.mode not in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
            raise ValueError(f"query mode {query.mode.value!r}: annal's store answers default and mmr")
        conditions = [c for c in [to_annal_filter(query.filters)] if c is not None]
        if query.doc_ids:
            conditions.append({"ref_doc_id": {"$in": list(query.doc_ids)}})
        condition = None if not conditions else conditions[0] if len(conditions) == 1 else {"$and": conditions}
        k = query.similarity_top_k
        mmr = query.mode == VectorStoreQueryMode.MMR
        fetch = min(K_MAX, max(k, int(kwargs.get("mmr_prefetch_k") or 4 * k))) if mmr else k
        # A retriever passes the threshold as a keyword (vector_store_kwargs).
        threshold = query.mmr_threshold if query.mmr_threshold is not None else kwargs.get("mmr_threshold")
        try:
            hits = self._client.search(self.index, query.query_embedding, k=fetch, filter=condition)
        except AnnalError as error:
            if error.is_missing_index(self.index):
                return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
            raise
        if mmr and hits:
            from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings

            ids = [h["id"] for h in hits]
            items = {i["id"]: i for i in self._client.get_items(self.index, ids, include=["vector"])["items"]}
            hits = [h for h in hits if h["id"] in items]
            scores, chosen = get_top_k_mmr_embeddings(
                list(query.query_embedding),
                [items[h["id"]]["vector"] for h in hits],
                similarity_top_k=k,
                embedding_ids=[h["id"] for h in hits],
                mmr_threshold=threshold,
            )
            by_id = {h["id"]: h for h in hits}
            hits = [by_id[id] for id in chosen]
            similarities = list(scores)
        else:
            similarities = [self._similarity(h["distance"]) for h in hits]
        nodes = [metadata_dict_to_node(h["metadata"]) for h in hits]
        return VectorStoreQueryResult(nodes=nodes, similarities=similarities, ids=[h["id"] for h in hits])
