"""Python client for annal's HTTP API.

>>> from annal import Client
>>> db = Client("http://127.0.0.1:7700")
>>> db.create_index("docs", dimension=384)
>>> db.upsert("docs", ids, vectors)            # numpy (n, d) float array or lists
>>> db.search("docs", query, k=10)             # [{"id", "distance", "metadata", ...}]

Vectors travel as base64 of little-endian float32 (no decimal JSON), upserts are
batched, and every error of the server is raised as `AnnalError` with its `status`,
`error` and `detail`.
"""

from __future__ import annotations

import base64
import os
import json
import time
from concurrent.futures import ThreadPoolExecutor
import urllib.parse
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import requests

__all__ = ["Client", "AnnalError", "encode_vector"]


#: Most ids one items request takes (the server's bound).
IDS_PER_REQUEST = 1000
#: Most results one search answers (the server's bound on k).
K_MAX = 1000


class AnnalError(Exception):
    """An error answer of the server: HTTP `status`, its `error` code and `detail`."""

    def __init__(self, status: int, error: str, detail: str, body: Any = None):
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.body = body

    def is_missing_index(self, index: str) -> bool:
        """Whether this says that `index` does not exist (not another 404: a route, a
        record, a payload index)."""
        return self.status == 404 and self.detail.startswith(f'index "{index}"')


def encode_vector(vector: Any) -> str:
    """One vector as the API's base64 of little-endian float32."""
    array = np.ascontiguousarray(np.asarray(vector, dtype="<f4")).reshape(-1)
    return base64.b64encode(array.tobytes()).decode("ascii")


def _rows_base64(matrix: np.ndarray) -> list:
    """Each row of a contiguous float32 matrix as base64 (ASCII bytes). When a row's
    byte length is a multiple of 3, base64 of the whole block splits exactly at row
    boundaries (no padding inside), so one encode serves every row."""
    rows, dimension = matrix.shape
    row_bytes = dimension * 4
    if row_bytes % 3 == 0:
        block = base64.b64encode(matrix.tobytes())
        width = row_bytes // 3 * 4
        return [block[i * width:(i + 1) * width] for i in range(rows)]
    return [base64.b64encode(matrix[i].tobytes()) for i in range(rows)]


def _add_body(ids, matrix, metadata, partitions, start: int, end: int, wait: str) -> bytes:
    """The JSON body of one add request for rows start..end, assembled as bytes: the
    base64 vectors need no escaping, so only ids, metadata and partitions go through
    `json.dumps`."""
    vectors = _rows_base64(matrix[start:end])
    parts = [b'{"items":[']
    for offset, i in enumerate(range(start, end)):
        if offset:
            parts.append(b",")
        parts += (b'{"id":', json.dumps(ids[i]).encode("utf-8"), b',"vector":"', vectors[offset], b'"')
        if metadata is not None and metadata[i] is not None:
            parts += (b',"metadata":', json.dumps(metadata[i]).encode("utf-8"))
        if partitions is not None and partitions[i] is not None:
            parts += (b',"partition":', json.dumps(partitions[i]).encode("utf-8"))
        parts.append(b"}")
    parts += (b'],"wait":', json.dumps(wait).encode("utf-8"), b"}")
    return b"".join(parts)


def _matrix(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors, dtype="<f4")
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ValueError(f"vectors must be a (n, d) array, got shape {array.shape}")
    return np.ascontiguousarray(array)


def _show_progress(bar: Any, at: dict) -> Any:
    """Draw a job's progress `at` on `bar` (a new one for each stage); returns the bar."""
    from tqdm import tqdm  # optional dependency: pip install annal-client[progress]

    if bar is None or bar.desc != at["stage"]:
        if bar is not None:
            bar.close()
        bar = tqdm(total=at["total"], desc=at["stage"], unit="")
    bar.total = at["total"]
    bar.n = at["done"]
    eta = at.get("eta_ms")
    bar.set_postfix_str("" if eta is None else f"{eta / 1000:.0f} s left (server)", refresh=False)
    bar.refresh()
    return bar


class Client:
    """A connection to one annal server."""

    def __init__(self, url: str = "http://127.0.0.1:7700", actor: Optional[str] = None, timeout: float = 300.0,
                 token: Optional[str] = None):
        """`token`: a bearer token for a server with authentication (default: the
        `ANNAL_TOKEN` environment variable); its name is then the actor of every write,
        whatever `actor` says."""
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.actor = actor
        self.token = token if token is not None else os.environ.get("ANNAL_TOKEN")
        self.session = self._new_session()

    def __repr__(self) -> str:
        # Never the token.
        return f"Client({self.url!r}, actor={self.actor!r}, token={'set' if self.token else None})"

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        if self.actor is not None:
            session.headers["x-annal-actor"] = self.actor
        if self.token:
            session.headers["authorization"] = f"Bearer {self.token}"
        return session

    # -- plumbing --------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, params: Optional[dict] = None,
              retries: int = 0, data: Optional[bytes] = None,
              session: Optional[requests.Session] = None) -> Any:
        """One request; `body` is sent as JSON, or `data` as an already encoded JSON
        body; on `session` (one per sender thread) or the client's own."""
        session = session or self.session
        params = {k: v for k, v in (params or {}).items() if v is not None}
        headers = {"content-type": "application/json"} if data is not None else None

        def send():
            return session.request(method, self.url + path, json=body, data=data, params=params,
                                        headers=headers, timeout=self.timeout)

        response = send()
        # A read waiting for its min_seq answers 503 with Retry-After while the server
        # applies: wait as told, a bounded number of times.
        while response.status_code == 503 and retries > 0 and "retry-after" in response.headers:
            retries -= 1
            time.sleep(float(response.headers["retry-after"]))
            response = send()
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            payload = payload or {}
            raise AnnalError(
                response.status_code,
                str(payload.get("error", "")),
                str(payload.get("detail", response.text)),
                payload,
            )
        return payload

    # -- indexes ---------------------------------------------------------------------

    def create_index(
        self,
        name: str,
        dimension: Optional[int] = None,
        distance: str = "cosine",
        m: Optional[int] = None,
        ef_construction: Optional[int] = None,
        ef_search: Optional[int] = None,
        embedder: Optional[str] = None,
        text: Optional[dict] = None,
        storage: Optional[str] = None,
        pq_m: Optional[int] = None,
        refine: Optional[int] = None,
    ) -> dict:
        """A vector index of `dimension`, or with `embedder` (a model id the server
        offers, e.g. "all-MiniLM-L6-v2") a document index: it takes text
        (`upsert_documents`) and embeds it; its dimension is the model's. A document
        index has a full-text index for keyword and hybrid search: `text` configures it
        (`{"tokenizer": "simple"|"whitespace", "stemmer": "english"|None, "fields":
        [...]}`) or turns it off (`{"enabled": False}`). `storage` ("flat", "fp16",
        "sq8", "sq4", "pq" with `pq_m`) quantizes the graph; `refine` (1 to 16)
        re-scores `refine x k` candidates with the full vectors."""
        body: dict = {"name": name, "distance": distance}
        if dimension is not None:
            body["dimension"] = dimension
        if embedder is not None:
            body["embedder"] = embedder
        if text is not None:
            body["text"] = text
        for key, value in (("m", m), ("ef_construction", ef_construction), ("ef_search", ef_search),
                           ("storage", storage), ("pq_m", pq_m), ("refine", refine)):
            if value is not None:
                body[key] = value
        return self._call("POST", "/vectors/index", body)

    def list_indexes(self, as_of: Optional[int] = None, min_seq: Optional[int] = None) -> list:
        return self._call("GET", "/vectors/index", params={"as_of": as_of, "min_seq": min_seq})["names"]

    def get_index(self, name: str, as_of: Optional[int] = None, min_seq: Optional[int] = None,
                  retries: int = 60) -> dict:
        """An index's params, length, and `applied_seq`/`last_seq`. With `min_seq`, the
        server waits for that event (10 s per try); `retries` more tries follow its
        Retry-After."""
        params = {"as_of": as_of, "min_seq": min_seq}
        return self._call("GET", f"/vectors/index/{name}", params=params, retries=retries if min_seq else 0)

    def drop_index(self, name: str, missing_ok: bool = False) -> Optional[dict]:
        """Drop index `name`; with `missing_ok`, an index that does not exist is no error
        (None)."""
        try:
            return self._call("DELETE", f"/vectors/index/{name}")
        except AnnalError as error:
            if missing_ok and error.is_missing_index(name):
                return None
            raise

    # -- writes ----------------------------------------------------------------------

    def upsert(
        self,
        name: str,
        ids: Sequence[str],
        vectors: Any,
        metadata: Optional[Sequence[Any]] = None,
        partitions: Optional[Sequence[Optional[str]]] = None,
        batch_size: int = 1000,
        wait: str = "applied",
        progress: bool = False,
        concurrency: int = 1,
    ) -> dict:
        """Insert or replace `ids` with the rows of `vectors` (an (n, d) array or lists),
        `batch_size` per request, the next body encoded while the previous request is in
        flight. Each batch is all or nothing. On an error the raised `AnnalError`
        carries `committed` (how many records were acknowledged), `committed_ranges`
        (their `(start, end)` row ranges) and `last_seq` (the highest acknowledged
        event, or None). Returns the answer of the batch with the highest `seq`.

        `concurrency` > 1 keeps that many requests in flight (worth it with
        `wait="durable"`, where the server acknowledges before the graph is built).
        Batches may then commit in any order, so the ids must be distinct, and after
        an error the committed rows need not be a prefix. A connection error is raised
        as itself, carrying the same attributes (a batch in flight when the connection
        failed may or may not be written: read before resending it)."""
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of ids, not one string")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        matrix = _matrix(vectors)
        if len(ids) != matrix.shape[0]:
            raise ValueError(f"{len(ids)} ids for {matrix.shape[0]} vectors")
        if concurrency > 1 and len(set(ids)) != len(ids):
            raise ValueError("ids repeat: with concurrency > 1 batches may commit in any order")
        bar = None
        if progress:
            from tqdm import tqdm  # optional dependency: pip install annal-client[progress]

            bar = tqdm(total=len(ids), unit="vec")
        last: dict = {}
        committed: list = []
        failure: Optional[BaseException] = None
        in_flight: list = []  # (start, end, future), oldest first

        def settle(entry):
            nonlocal last, failure
            start, end, future = entry
            try:
                answer = future.result()
            except Exception as error:  # the server's answer, or the connection's failure
                failure = failure or error
                return
            committed.append((start, end))
            if answer.get("seq") is not None and (last.get("seq") is None or answer["seq"] > last["seq"]):
                last = answer
            if bar is not None:
                bar.update(end - start)

        # `concurrency` sender threads; this thread encodes the next body meanwhile.
        pool = ThreadPoolExecutor(max_workers=concurrency)
        sessions = [self.session] + [self._new_session() for _ in range(concurrency - 1)]
        try:
            for number, start in enumerate(range(0, len(ids), batch_size)):
                end = min(start + batch_size, len(ids))
                body = _add_body(ids, matrix, metadata, partitions, start, end, wait)
                while len(in_flight) >= concurrency:
                    settle(in_flight.pop(0))
                if failure is not None:
                    break
                session = sessions[number % concurrency]
                in_flight.append((start, end, pool.submit(
                    self._call, "POST", f"/vectors/index/{name}/add", None, None, 0, body, session)))
            while in_flight:
                settle(in_flight.pop(0))
        finally:
            for _, _, future in in_flight:
                future.cancel()
            pool.shutdown(wait=True)
            for session in sessions[1:]:
                session.close()
            if bar is not None:
                bar.close()
        if failure is not None:
            # On an AnnalError as on a connection error: what is known to be written.
            failure.committed_ranges = sorted(committed)  # type: ignore[attr-defined]
            failure.committed = sum(end - start for start, end in committed)  # type: ignore[attr-defined]
            failure.last_seq = last.get("seq")  # type: ignore[attr-defined]
            raise failure
        return last

    def upsert_documents(
        self,
        name: str,
        ids: Sequence[str],
        texts: Sequence[str],
        metadata: Optional[Sequence[Any]] = None,
        partitions: Optional[Sequence[Optional[str]]] = None,
        batch_size: int = 1000,
        wait: str = "applied",
    ) -> dict:
        """Insert or replace documents of a document index, `batch_size` per request.
        Their vectors follow as the server's embedding queue drains (`wait_embedded`).
        On an error the raised `AnnalError` carries `committed` (documents written) and
        `last_seq`."""
        if isinstance(ids, str) or isinstance(texts, str):
            raise TypeError("ids and texts must be sequences, not one string")
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        last: dict = {}
        for start in range(0, len(ids), batch_size):
            items = []
            for i in range(start, min(start + batch_size, len(ids))):
                item: dict = {"id": ids[i], "text": texts[i]}
                if metadata is not None and metadata[i] is not None:
                    item["metadata"] = metadata[i]
                if partitions is not None and partitions[i] is not None:
                    item["partition"] = partitions[i]
                items.append(item)
            try:
                last = self._call("POST", f"/vectors/index/{name}/documents", {"items": items, "wait": wait})
            except AnnalError as error:
                error.committed = start
                error.last_seq = last.get("seq")
                raise
        return last

    def embedding(self, name: str) -> dict:
        """The index's embedder, whether the server has it, its queue and drain report."""
        return self._call("GET", f"/vectors/index/{name}/embedding")

    def set_embedder(self, name: str, model: str) -> dict:
        """Change the index's embedder: every document is embedded again (backfill)."""
        return self._call("PUT", f"/vectors/index/{name}/embedding", {"model": model})

    def wait_embedded(self, name: str, timeout: float = 600.0, poll: float = 0.05,
                      min_seq: Optional[int] = None) -> dict:
        """Poll `embedding` until the queue is empty (every document has its current
        vector); returns the last answer. Pass the `seq` of the last document upsert as
        `min_seq` after writes with `wait="durable"` (the queue holds them only once
        applied). Raises TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        if min_seq is not None:
            self.get_index(name, min_seq=min_seq)
        while True:
            info = self.embedding(name)
            queue = info["queue"]
            if queue["incremental"] == 0 and queue["backfill"] == 0 and queue["in_flight"] == 0:
                return info
            if time.monotonic() > deadline:
                raise TimeoutError(f"index {name}: embedding queue not drained: {queue}")
            time.sleep(poll)

    def search_text(self, name: str, text: str, k: int = 10, partition: Optional[str] = None,
                    min_seq: Optional[int] = None, filter: Optional[dict] = None,
                    mode: str = "semantic", fusion: Optional[str] = None,
                    rrf_k: Optional[float] = None, alpha: Optional[float] = None,
                    candidates: Optional[int] = None, scores: bool = False,
                    syntax: bool = False, as_of: Optional[int] = None) -> list:
        """Search a document index by text. `mode` "semantic" (the text's embedding),
        "keyword" (BM25 over the documents' text; no embedder needed) or "hybrid"
        (both, fused by `fusion` "adaptive", the default: RRF with each side weighted
        by how much of the query the keyword hits hold; "rrf" with `rrf_k`; or
        "weighted" with `alpha`, the dense side's weight). Keyword and hybrid hits
        have a `score` (larger is better); with `scores`, hybrid hits add `dense`
        (`{rank, distance}`) and `keyword` (`{rank, score, coverage}`), each None for
        a side the hit is not in. `syntax`: the text is in tantivy's query
        language (`+must -not "a phrase" title:word`)."""
        body: dict = {"text": text, "k": k}
        if mode != "semantic":
            body["mode"] = mode
        if partition is not None:
            body["partition"] = partition
        if filter is not None:
            body["filter"] = filter
        for key, value in (("fusion", fusion), ("rrf_k", rrf_k), ("alpha", alpha),
                           ("candidates", candidates)):
            if value is not None:
                body[key] = value
        if scores:
            body["scores"] = True
        if syntax:
            body["syntax"] = True
        retries = 60 if min_seq else 0
        return self._call("POST", f"/vectors/index/{name}/search", body,
                          {"min_seq": min_seq, "as_of": as_of}, retries=retries)["results"]

    def search_keyword(self, name: str, text: str, k: int = 10, **options: Any) -> list:
        """BM25 keyword search (`search_text` with mode "keyword")."""
        return self.search_text(name, text, k, mode="keyword", **options)

    def search_hybrid(self, name: str, text: str, k: int = 10, **options: Any) -> list:
        """Hybrid search (`search_text` with mode "hybrid")."""
        return self.search_text(name, text, k, mode="hybrid", **options)

    def search_texts(self, name: str, texts: Sequence[str], k: int = 10,
                     partition: Optional[str] = None) -> list:
        """One result list per text."""
        body: dict = {"texts": list(texts), "k": k}
        if partition is not None:
            body["partition"] = partition
        return self._call("POST", f"/vectors/index/{name}/search", body)["results"]

    def delete(self, name: str, ids: Optional[Sequence[str]] = None, wait: str = "applied",
               filter: Optional[dict] = None, partition: Optional[str] = None) -> dict:
        """Delete records by id, or every record matching `filter` and/or in `partition`
        (the event records the ids the filter selected)."""
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of ids, not one string")
        body: dict = {"wait": wait}
        if ids is not None:
            body["ids"] = list(ids)
        if filter is not None:
            body["filter"] = filter
        if partition is not None:
            body["partition"] = partition
        return self._call("POST", f"/vectors/index/{name}/delete", body)

    # -- metadata filters ------------------------------------------------------------

    def create_payload_index(self, name: str, field: str, type: str) -> dict:
        """Index metadata `field` (a dotted path) as `keyword`, `integer`, `float`,
        `bool` or `datetime` for filters."""
        return self._call("POST", f"/vectors/index/{name}/payload-indexes", {"field": field, "type": type})

    def payload_indexes(self, name: str, as_of: Optional[int] = None) -> list:
        """The payload indexes: dicts with `field`, `type`, `records`, `distinct`, `bytes`."""
        return self._call("GET", f"/vectors/index/{name}/payload-indexes", params={"as_of": as_of})[
            "payload_indexes"]

    def drop_payload_index(self, name: str, field: str) -> dict:
        field = urllib.parse.quote(field, safe="")
        return self._call("DELETE", f"/vectors/index/{name}/payload-indexes/{field}")

    def get_items(self, name: str, ids: Sequence[str], include: Optional[Sequence[str]] = None,
                  as_of: Optional[int] = None, min_seq: Optional[int] = None) -> dict:
        """Records by id: `{items, missing}`; `include` any of metadata, vector, partition.
        More ids than one request takes (1,000) are asked for in several."""
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of ids, not one string")
        ids = list(ids)
        found: dict = {"items": [], "missing": []}
        for start in range(0, max(len(ids), 1), IDS_PER_REQUEST):
            body: dict = {"ids": ids[start:start + IDS_PER_REQUEST]}
            if include is not None:
                body["include"] = list(include)
            page = self._call("POST", f"/vectors/index/{name}/items", body, {"as_of": as_of, "min_seq": min_seq},
                              retries=60 if min_seq else 0)
            found["items"] += page["items"]
            found["missing"] += page["missing"]
        return found

    def items(self, name: str, filter: Optional[dict] = None, partition: Optional[str] = None,
              limit: int = 100, cursor: Optional[str] = None, include: Optional[Sequence[str]] = None,
              as_of: Optional[int] = None, min_seq: Optional[int] = None) -> dict:
        """One page of the records `filter`/`partition` select, in id order:
        `{items, next_cursor}` (pass `next_cursor` back as `cursor`)."""
        body: dict = {"limit": limit}
        for key, value in (("filter", filter), ("partition", partition), ("cursor", cursor)):
            if value is not None:
                body[key] = value
        if include is not None:
            body["include"] = list(include)
        return self._call("POST", f"/vectors/index/{name}/items", body, {"as_of": as_of, "min_seq": min_seq},
                          retries=60 if min_seq else 0)

    def scroll(self, name: str, filter: Optional[dict] = None, partition: Optional[str] = None,
               page_size: int = 100, include: Optional[Sequence[str]] = None, as_of: Optional[int] = None):
        """Every record `filter`/`partition` select, in id order, page by page (an iterator)."""
        cursor = None
        while True:
            page = self.items(name, filter, partition, page_size, cursor, include, as_of)
            yield from page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def get_item(self, name: str, id: str, as_of: Optional[int] = None) -> dict:
        """One record with its vector: `{id, vector, metadata?, partition?}`."""
        id = urllib.parse.quote(id, safe="")
        return self._call("GET", f"/vectors/index/{name}/items/{id}", params={"as_of": as_of})

    def patch_metadata(self, name: str, id: str, patch: dict, wait: str = "applied") -> dict:
        """Merge `patch` into one record's metadata (JSON merge patch: None removes a key)."""
        id = urllib.parse.quote(id, safe="")
        return self._call("PATCH", f"/vectors/index/{name}/items/{id}", {"metadata": patch, "wait": wait})

    def set_metadata(self, name: str, metadata: dict, merge: bool = False, wait: str = "applied") -> dict:
        """Replace (or with `merge`, merge into) the metadata of existing records, keeping
        their vectors: `metadata` maps id -> document (None clears it)."""
        items = [{"id": id, "metadata": doc} for id, doc in metadata.items()]
        return self._call("POST", f"/vectors/index/{name}/metadata", {"items": items, "merge": merge, "wait": wait})

    def count(self, name: str, filter: Optional[dict] = None, partition: Optional[str] = None,
              as_of: Optional[int] = None, min_seq: Optional[int] = None) -> int:
        """How many records `filter`/`partition` select."""
        body: dict = {}
        if filter is not None:
            body["filter"] = filter
        if partition is not None:
            body["partition"] = partition
        return self._call("POST", f"/vectors/index/{name}/count", body, {"as_of": as_of, "min_seq": min_seq},
                          retries=60 if min_seq else 0)["count"]

    # -- reads -----------------------------------------------------------------------

    def search(
        self,
        name: str,
        vector: Any,
        k: int = 10,
        partition: Optional[str] = None,
        as_of: Optional[int] = None,
        min_seq: Optional[int] = None,
        filter: Optional[dict] = None,
    ) -> list:
        """The `k` nearest records to `vector` (matching `filter`, in `partition`): dicts
        with `id`, `distance` (smaller is closer), and `metadata`/`partition` when set."""
        body: dict = {"vector": encode_vector(vector), "k": k}
        if partition is not None:
            body["partition"] = partition
        if filter is not None:
            body["filter"] = filter
        params = {"as_of": as_of, "min_seq": min_seq}
        retries = 60 if min_seq else 0
        return self._call("POST", f"/vectors/index/{name}/search", body, params, retries=retries)["results"]

    def explain(self, name: str, vector: Any, k: int = 10, filter: Optional[dict] = None,
                partition: Optional[str] = None, as_of: Optional[int] = None) -> dict:
        """A search's results and the plan its filters ran with: `{results, explain}`."""
        body: dict = {"vector": encode_vector(vector), "k": k, "explain": True}
        if partition is not None:
            body["partition"] = partition
        if filter is not None:
            body["filter"] = filter
        return self._call("POST", f"/vectors/index/{name}/search", body, {"as_of": as_of})

    def search_batch(
        self,
        name: str,
        vectors: Any,
        k: int = 10,
        partition: Optional[str] = None,
        as_of: Optional[int] = None,
        min_seq: Optional[int] = None,
        filter: Optional[dict] = None,
    ) -> list:
        """One result list per row of `vectors` (searched together, on all cores)."""
        matrix = _matrix(vectors)
        body: dict = {"vectors": [base64.b64encode(row.tobytes()).decode("ascii") for row in matrix], "k": k}
        if partition is not None:
            body["partition"] = partition
        if filter is not None:
            body["filter"] = filter
        params = {"as_of": as_of, "min_seq": min_seq}
        retries = 60 if min_seq else 0
        return self._call("POST", f"/vectors/index/{name}/search", body, params, retries=retries)["results"]

    @staticmethod
    def ids_and_distances(results: list) -> tuple:
        """A search's results as (ids list, float32 distances array)."""
        return [r["id"] for r in results], np.asarray([r["distance"] for r in results], dtype=np.float32)

    # -- promotions, trials ----------------------------------------------------------

    def promote(self, name: str, m: int, ef_construction: int, ef_search: int, trial_id: str = "",
                promoted_by: Optional[str] = None, note: str = "", storage: Optional[str] = None,
                pq_m: Optional[int] = None, refine: Optional[int] = None) -> dict:
        body = {"m": m, "ef_construction": ef_construction, "ef_search": ef_search, "trial_id": trial_id,
                "note": note}
        for key, value in (("storage", storage), ("pq_m", pq_m), ("refine", refine)):
            if value is not None:
                body[key] = value
        if promoted_by is not None:
            body["promoted_by"] = promoted_by
        return self._call("POST", f"/vectors/index/{name}/promote", body)

    def rollback(self, name: str) -> dict:
        return self._call("POST", f"/vectors/index/{name}/rollback", {})

    def promotion(self, name: str) -> dict:
        return self._call("GET", f"/vectors/index/{name}/promotion")

    def promotions(self) -> dict:
        return self._call("GET", "/vectors/promotions")

    def job(self, job_id: int) -> dict:
        return self._call("GET", f"/jobs/{job_id}")

    def wait_job(self, started: dict, poll: float = 0.1, timeout: float = 3600.0, progress: bool = False) -> dict:
        """Poll a job started by a 202 answer until it ends; its result, or AnnalError
        with the job's error. `progress`: a progress bar per stage, with the server's
        ETA (needs the `progress` extra)."""
        deadline = time.monotonic() + timeout
        bar = None
        try:
            while True:
                job = self.job(started["job_id"])
                at = job.get("progress")
                if progress and at:
                    bar = _show_progress(bar, at)
                if job["status"] != "running":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"job {started['job_id']} still running")
                time.sleep(poll)
        finally:
            if bar is not None:
                bar.close()
        if job["status"] == "succeeded":
            return job["result"]
        error = job.get("error") or {}
        raise AnnalError(int(error.get("status", 500)), "job_failed", str(error.get("detail", "")), job)

    def create_eval(self, name: str, k: int = 10, sample: Optional[int] = None, seed: int = 0,
                    vectors: Any = None, eval_id: Optional[str] = None, progress: bool = False) -> dict:
        body: dict = {"k": k}
        if eval_id is not None:
            body["eval_id"] = eval_id
        if vectors is not None:
            body["vectors"] = [base64.b64encode(row.tobytes()).decode("ascii") for row in _matrix(vectors)]
        elif sample is not None:
            body["sample"] = {"count": sample, "seed": seed}
        return self.wait_job(self._call("POST", f"/vectors/index/{name}/evals", body), progress=progress)

    def run_trial(self, name: str, eval_id: str, m: int, ef_construction: int, ef_search: int,
                  trial_id: Optional[str] = None, storage: Optional[str] = None, pq_m: Optional[int] = None,
                  refine: Optional[int] = None, progress: bool = False) -> dict:
        body = {"eval_id": eval_id, "m": m, "ef_construction": ef_construction, "ef_search": ef_search}
        for key, value in (("storage", storage), ("pq_m", pq_m), ("refine", refine)):
            if value is not None:
                body[key] = value
        if trial_id is not None:
            body["trial_id"] = trial_id
        return self.wait_job(self._call("POST", f"/vectors/index/{name}/trials", body), progress=progress)

    def trials(self, name: str) -> dict:
        return self._call("GET", f"/vectors/index/{name}/trials")

    def best_trial(self, name: str, recall_min: Optional[float] = None, p99_max_us: Optional[int] = None,
                   eval_id: Optional[str] = None) -> Optional[dict]:
        if (recall_min is None) == (p99_max_us is None):
            raise ValueError("give recall_min (fastest over it) or p99_max_us (best recall under it)")
        params = {"objective": "latency" if recall_min is not None else "recall", "recall_min": recall_min,
                  "p99_max_us": p99_max_us, "eval_id": eval_id}
        return self._call("GET", f"/vectors/index/{name}/trials/best", params=params)["best"]

    def autotune(self, name: str, eval_id: str, recall_floor: float,
                 max_bytes_per_vector: Optional[int] = None, max_resident_mb: Optional[int] = None,
                 progress: bool = False) -> dict:
        """The grid as trials, promoting the fastest meeting `recall_floor`; with a
        memory budget (one of the two) it tries quantized storage kinds too and the
        promoted trial also fits the budget."""
        body: dict = {"eval_id": eval_id, "recall_floor": recall_floor}
        if max_bytes_per_vector is not None:
            body["max_bytes_per_vector"] = max_bytes_per_vector
        if max_resident_mb is not None:
            body["max_resident_mb"] = max_resident_mb
        return self.wait_job(self._call("POST", f"/vectors/index/{name}/autotune", body), progress=progress)

    # -- partitions ------------------------------------------------------------------

    def set_scheme(self, name: str, template: str) -> dict:
        return self._call("POST", f"/vectors/index/{name}/scheme", {"template": template})

    def migrate(self, name: str, template: str, dry_run: bool = False, batch_size: Optional[int] = None,
                take_snapshot_first: bool = True, progress: bool = False) -> dict:
        body: dict = {"template": template, "dry_run": dry_run, "take_snapshot_first": take_snapshot_first}
        if batch_size is not None:
            body["batch_size"] = batch_size
        return self.wait_job(self._call("POST", f"/vectors/index/{name}/migrate", body), progress=progress)

    def migration(self, name: str) -> dict:
        return self._call("GET", f"/vectors/index/{name}/migration")

    def clear_migration(self, name: str) -> dict:
        return self._call("DELETE", f"/vectors/index/{name}/migration")

    def partitions(self, name: str) -> dict:
        return self._call("GET", f"/vectors/index/{name}/partitions")

    # -- operations ------------------------------------------------------------------

    def snapshot(self) -> dict:
        return self._call("POST", "/admin/snapshots", {})

    def snapshots(self) -> dict:
        return self._call("GET", "/admin/snapshots")

    def log(self) -> dict:
        return self._call("GET", "/admin/log")

    def cluster(self) -> dict:
        """Where this node stands in its cluster: `{clustered, node, stream,
        stream_last, copied, lag_messages, last_seq, applied_seq, lag_events, ready,
        ...}`; `{clustered: false, ...}` for a single node."""
        return self._call("GET", "/admin/cluster")

    def events(self, from_seq: int = 1, limit: int = 100, wait_ms: int = 0, vectors: bool = False) -> dict:
        """Events from `from_seq` on, each `{seq, time_ms, actor, kind, body}`; with
        `wait_ms`, waits that long for the first to commit. `{events, last_seq}`."""
        params = {"from": from_seq, "limit": limit, "wait_ms": wait_ms, "vectors": str(vectors).lower()}
        return self._call("GET", "/admin/events", params=params)

    def health(self) -> dict:
        return self._call("GET", "/healthz")

    def ready(self) -> bool:
        try:
            self._call("GET", "/readyz")
            return True
        except AnnalError:
            return False

    def metrics(self) -> str:
        response = self.session.get(f"{self.url}/metrics", timeout=self.timeout)
        self._raise_for(response)
        return response.text

    def openapi(self) -> dict:
        """The server's OpenAPI 3.1 description."""
        return self._call("GET", "/openapi.json")

    # -- buckets ---------------------------------------------------------------------

    def buckets(self) -> list:
        return self._call("GET", "/storage/buckets")["buckets"]

    def probe(self, bucket: str) -> dict:
        return self._call("POST", f"/storage/buckets/{bucket}/probe", {})

    def list_objects(self, bucket: str, prefix: Optional[str] = None) -> dict:
        return self._call("GET", f"/storage/buckets/{bucket}/objects", params={"prefix": prefix})

    @staticmethod
    def _raise_for(response: Any) -> None:
        if response.status_code >= 400:
            try:
                payload = response.json()
            except ValueError:
                payload = {}
            raise AnnalError(response.status_code, str(payload.get("error", "")),
                             str(payload.get("detail", response.text)), payload)

    def get_object(self, bucket: str, key: str) -> bytes:
        key = urllib.parse.quote(key, safe="/")
        response = self.session.get(f"{self.url}/storage/buckets/{bucket}/objects/{key}", timeout=self.timeout)
        self._raise_for(response)
        return response.content

    def put_object(self, bucket: str, key: str, data: bytes) -> dict:
        key = urllib.parse.quote(key, safe="/")
        response = self.session.put(
            f"{self.url}/storage/buckets/{bucket}/objects/{key}",
            data=data,
            headers={"content-type": "application/octet-stream"},
            timeout=self.timeout,
        )
        self._raise_for(response)
        return response.json()

    def delete_object(self, bucket: str, key: str) -> dict:
        key = urllib.parse.quote(key, safe="/")
        return self._call("DELETE", f"/storage/buckets/{bucket}/objects/{key}")

    def bucket_errors(self, limit: int = 100, bucket: Optional[str] = None, op: Optional[str] = None) -> list:
        params = {"limit": limit, "bucket": bucket, "op": op}
        return self._call("GET", "/storage/errors", params=params)["errors"]

    def bucket_health(self, minutes: int = 60) -> dict:
        return self._call("GET", "/storage/bucket-health", params={"minutes": minutes})
