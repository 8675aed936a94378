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
