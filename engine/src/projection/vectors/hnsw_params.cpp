// Search parameters for FAISS's HNSW with a per-search efSearch and a selector: the
// C API only makes the generic SearchParameters, whose searches use the index's
// efSearch (a field that cannot change while other threads search). Freed with
// faiss_SearchParameters_free (the destructor is virtual).
#include <faiss/impl/HNSW.h>

extern "C" int annal_SearchParametersHNSW_new(void** out, void* sel, int ef_search) {
    try {
        auto* params = new faiss::SearchParametersHNSW();
        params->sel = static_cast<faiss::IDSelector*>(sel);
        params->efSearch = ef_search;
        *out = static_cast<faiss::SearchParameters*>(params);
        return 0;
    } catch (...) {
        *out = nullptr;
        return -1;
    }
}

// The bytes per vector of an HNSW index's storage (its codes: 4 x d for flat floats),
// or -1 when the index is not an HNSW index over flat codes. What a graph read from a
// snapshot is checked against before its codes are trusted as the config's storage.
#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexHNSW.h>

extern "C" int annal_hnsw_code_size(const void* index, size_t* out) {
    try {
        auto* hnsw = dynamic_cast<const faiss::IndexHNSW*>(static_cast<const faiss::Index*>(index));
        if (hnsw == nullptr || hnsw->storage == nullptr) {
            return -1;
        }
        auto* codes = dynamic_cast<const faiss::IndexFlatCodes*>(hnsw->storage);
        if (codes == nullptr) {
            return -1;
        }
        *out = codes->code_size;
        return 0;
    } catch (...) {
        return -1;
    }
}

// `IDMap,HNSW<M>_PQ<pq_m>` with the metric asked (FAISS's factory makes HNSW-over-PQ
// with L2 whatever the metric) and without polysemous training (HNSW never uses it, and
// it costs half a million iterations per sub-quantizer). The caller owns `*out`.
#include <faiss/IndexIDMap.h>
#include <faiss/IndexPQ.h>

extern "C" int annal_IndexIDMap_HNSWPQ_new(void** out, int d, int pq_m, int hnsw_m, int metric) {
    *out = nullptr;
    try {
        if (d <= 0 || pq_m <= 0 || hnsw_m <= 0 || d % pq_m != 0) {
            return -1;
        }
        auto* hnsw = new faiss::IndexHNSWPQ(d, pq_m, hnsw_m, 8, static_cast<faiss::MetricType>(metric));
        auto* pq = dynamic_cast<faiss::IndexPQ*>(hnsw->storage);
        if (pq != nullptr) {
            pq->do_polysemous_training = false;
        }
        auto* map = new faiss::IndexIDMap(hnsw);
        map->own_fields = true;
        *out = static_cast<faiss::Index*>(map);
        return 0;
    } catch (...) {
        return -1;
    }
}
