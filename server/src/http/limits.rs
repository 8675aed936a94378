//! Every bound and timing the HTTP layer applies, named once.

/// Largest request body accepted (413 above it).
pub const BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Default budget of request body bytes held at once (`--inflight-body-bytes`).
pub const INFLIGHT_BODY_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;
/// Bytes one permit of the body budget stands for: the budget counts in KiB so that
/// the largest body takes few enough permits for one `u32` request.
pub const BUDGET_PERMIT_BYTES: u64 = 1024;
/// `Retry-After` of a request refused because the body budget was spent: bodies in
/// flight are read and parsed in well under a second.
pub const OVERLOADED_RETRY_AFTER_S: u32 = 1;
/// `Retry-After` of a request refused because the engine is closing: the time a
/// supervisor takes to restart the process, roughly.
pub const CLOSING_RETRY_AFTER_S: u32 = 5;
/// `k` of a search that names none.
pub const SEARCH_K_DEFAULT: usize = 10;
